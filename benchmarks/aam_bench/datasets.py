"""Prepared benchmark data: ibd-2538 (real) or the simulator, cached with a grouped split.

Nothing is downloaded: ibd-2538 is read from ``../shared/data/ibd-2538`` and the simulator runs
locally. Each dataset is prepared once into ``<cache_dir>/<name>/prepared`` (``aam prepare``'s
folder); the grouped train/val split is written beside it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from aam.atomic import write_lines
from aam.data.distance_io import DISTANCES_FILE
from aam.data.prepared import LEGACY_DISTANCES_FILE
from aam.errors import InputError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
IBD_DIR = REPO.parent / "shared" / "data" / "ibd-2538"


@dataclass(frozen=True)
class BenchData:
    """A prepared folder, its split lists and the fine-tuning target/categories to use."""

    name: str
    prepared_dir: Path
    train_samples: Path
    val_samples: Path
    target_column: str
    categorical_columns: tuple[str, ...]
    group_column: str
    info: dict


SPECS = {  # target, categories, grouping column, min depth
    "ibd": ("age", ("ibd", "sex"), "host_subject_id", 1000),
    "sim": ("target", ("category",), "subject", 0),
}


def ensure_data(cfg) -> BenchData:
    """Prepare (when absent) and split the dataset named by ``cfg.data``.

    Parameters
    ----------
    cfg : BenchConfig
        ``data``, ``prepared_dir``, ``cache_dir``, ``sim_samples``, ``sim_asvs``, ``seed``.

    Returns
    -------
    BenchData

    Raises
    ------
    FileNotFoundError
        When ibd-2538 is not at ``../shared/data/ibd-2538`` and no ``prepared_dir`` is given.
    InputError
        When a given prepared folder has no distances.
    """
    target, categories, group, min_depth = SPECS[cfg.data]
    tag = "ibd-2538" if cfg.data == "ibd" else f"sim-{cfg.sim_samples}x{cfg.sim_asvs}-{cfg.seed}"
    root = Path(cfg.cache_dir).resolve() / tag
    prepared = Path(cfg.prepared_dir).resolve() if cfg.prepared_dir else root / "prepared"
    if cfg.prepared_dir and not any((prepared / name).exists()
                                    for name in (DISTANCES_FILE, LEGACY_DISTANCES_FILE)):
        raise InputError(f"{prepared} has no {DISTANCES_FILE}; pretraining needs distances. Give "
                         "a folder prepared with --tree or --beta-metric, or leave "
                         "--prepared-dir out.")
    if not (prepared / "prepare.json").exists():
        if cfg.data == "ibd":
            _prepare_ibd(prepared, target, categories, min_depth)
        else:
            _prepare_sim(root, prepared, cfg)
    info = json.loads((prepared / "prepare.json").read_text(encoding="utf-8"))
    train, val = _split(prepared, root, group, cfg.seed)
    return BenchData(tag, prepared, train, val, target, categories, group, info)


def _prepare_ibd(out: Path, target: str, categories, min_depth: int) -> None:
    from aam.data.prepare import PrepareConfig, prepare

    if not IBD_DIR.is_dir():
        raise FileNotFoundError(f"ibd-2538 not found: {IBD_DIR}")
    log.info("preparing ibd-2538 into %s (UniFrac takes about 2 minutes)", out)
    prepare(PrepareConfig(table=str(IBD_DIR / "table.biom"),
                          metadata=str(IBD_DIR / "sample-metadata.tsv"), target_column=target,
                          tree=str(IBD_DIR / "tree.nwk"), categorical_columns=tuple(categories),
                          min_depth=min_depth, output_dir=str(out)))


def _prepare_sim(root: Path, out: Path, cfg) -> None:
    from aam.data.prepare import PrepareConfig, prepare
    from aam.data.simulate import SimulationConfig, simulate, write_simulation

    target, categories, _, _ = SPECS["sim"]
    raw = write_simulation(simulate(SimulationConfig(n_samples=cfg.sim_samples,
                                                     n_asvs=cfg.sim_asvs, seed=cfg.seed)),
                           root / "raw")
    prepare(PrepareConfig(table=str(raw["table.biom"]), metadata=str(raw["metadata.tsv"]),
                          target_column=target, tree=str(raw["tree.nwk"]),
                          categorical_columns=tuple(categories), output_dir=str(out)))


def _split(prepared: Path, root: Path, group: str, seed: int) -> tuple[Path, Path]:
    """Grouped holdout split (20% of the groups to val), cached as two sample lists."""
    from aam.data.metadata import read_metadata
    from aam.data.splits import SplitConfig, split_samples

    train_path, val_path = root / "train_samples.txt", root / "val_samples.txt"
    if not (train_path.exists() and val_path.exists()):
        meta = read_metadata(prepared / "metadata.tsv")
        ids = [str(s) for s in meta.index]
        fold = split_samples(ids, SplitConfig(val_fraction=0.2, group_by=group, seed=seed),
                             groups=meta[group].astype(str).tolist())[0]
        write_lines(train_path, fold.train)
        write_lines(val_path, fold.val)
    return train_path, val_path
