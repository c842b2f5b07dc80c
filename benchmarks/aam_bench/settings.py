"""The recorded benchmark configuration: one frozen dataclass, stored with every result."""

from __future__ import annotations

from dataclasses import dataclass, field

from aam.errors import InputError

DATASETS = ("ibd", "sim")
STAGES = ("pretrain", "finetune", "finetune_frozen", "predict")


@dataclass(frozen=True)
class BenchConfig:
    """What one harness run measures, and at which settings.

    The defaults are the issue's reference settings: embedding 64, 2 layers per level, 4 heads,
    token_limit 256, batch 8, ibd-2538 samples with >= 1,000 reads, 2 warmup + 8 timed steps.
    """

    data: str = "ibd"  # ibd | sim
    prepared_dir: str | None = None  # reuse an existing `aam prepare` folder (needs distances.h5)
    cache_dir: str = "benchmarks/out"  # prepared data and split lists are cached here
    embedding_dim: int = 64
    attention_heads: int = 4
    layers: int = 2  # per level: nucleotide, ASV, sample and target encoder
    token_limit: int = 256
    batch_size: int = 8
    asv_sampling: str = "first"
    warmup_steps: int = 2
    timed_steps: int = 8
    sweep_steps: int = 4  # timed steps of each token_limit / batch-size sweep point
    token_limits: tuple[int, ...] = (128, 256, 512, 1024)
    batch_sizes: tuple[int, ...] = (4, 8, 16, 32)
    sweep_stage: str = "pretrain"  # stage timed in the sweeps
    stages: tuple[str, ...] = STAGES
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    device: str = "cpu"  # cpu | cuda | auto
    in_process: bool = False  # measure in this process (tests); peak memory is then not isolated
    profile: bool = True  # per-component times and the top operators of one step
    epoch_samples: int = 96  # training samples of the whole-epoch frozen vs unfrozen timing
    epochs: int = 3  # epochs of that timing; epochs 2+ are reported (caches warm)
    sim_samples: int = 200
    sim_asvs: int = 300
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes recorded with the results

    def __post_init__(self) -> None:
        if self.data not in DATASETS:
            raise InputError(f"--data must be one of {', '.join(DATASETS)}; got {self.data!r}.")
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise InputError(f"Unknown stage(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(STAGES)}.")
        if self.sweep_stage not in STAGES:
            raise InputError(f"--sweep-stage must be one of {', '.join(STAGES)}; got "
                             f"{self.sweep_stage!r}.")
        small = [s for s in (self.batch_size, *self.batch_sizes) if s < 2 or s % 2]
        if small:
            raise InputError(f"batch sizes must be even and >= 2 (sample pairs), got "
                             f"{', '.join(map(str, small))}.")
        for name in ("warmup_steps", "timed_steps", "sweep_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.embedding_dim % self.attention_heads:
            raise InputError(f"embedding_dim ({self.embedding_dim}) must be divisible by "
                             f"attention_heads ({self.attention_heads}).")


def quick(cfg: BenchConfig) -> dict:
    """Overrides of ``--quick``: one warmup and two timed steps, two points per sweep."""
    return {"warmup_steps": 1, "timed_steps": 2, "sweep_steps": 2, "epoch_samples": 16,
            "token_limits": cfg.token_limits[:2], "batch_sizes": cfg.batch_sizes[:2],
            "profile": False}
