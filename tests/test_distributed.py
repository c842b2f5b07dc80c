"""Strategy selection: mutually exclusive flags, launcher and GPU checks, in one order."""

import pytest
import torch
from torch import nn

from aam.errors import InputError
from aam.training.distributed import (DistContext, all_reduce_sums, gather_objects,
                                      resolve_strategy, unwrap, wrap_model)

TORCHRUN_2 = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}


def test_auto_means_ddp_under_torchrun():
    assert resolve_strategy("auto", env=TORCHRUN_2, cuda_count=0) == ("ddp", 2)
    assert resolve_strategy("auto", env={}, cuda_count=0) == ("none", 1)


def test_data_parallel_without_cuda_says_so():
    with pytest.raises(InputError, match="--parallel dp needs CUDA GPUs"):
        resolve_strategy("dp", env={}, cuda_count=0)


def test_more_ranks_than_gpus_fails_fast():
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "4"}
    with pytest.raises(InputError, match="started 4 processes but only 2 GPU"):
        resolve_strategy("ddp", env=env, cuda_count=2)


def test_cpu_processes_may_outnumber_the_gpus():
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "4"}
    assert resolve_strategy("ddp", env=env, cuda_count=1, device="cpu") == ("ddp", 4)


def test_ddp_without_launcher_points_to_torchrun():
    with pytest.raises(InputError, match="torchrun --standalone"):
        resolve_strategy("ddp", env={}, cuda_count=0)


def test_single_process_helpers_are_identities():
    ctx = DistContext()
    assert all_reduce_sums({"loss": 2.0, "n": 3.0}, ctx) == {"loss": 2.0, "n": 3.0}
    assert gather_objects({"a": 1}, ctx) == [{"a": 1}]
    model = nn.Linear(2, 2)
    assert wrap_model(model, ctx) is model
    assert unwrap(torch.nn.DataParallel(model)) is model


def test_data_parallel_drives_every_visible_gpu_from_one_process():
    assert resolve_strategy("dp", env={}, cuda_count=2) == ("dp", 1)
    with pytest.raises(InputError, match="--parallel dp is single-process"):
        resolve_strategy("dp", env=TORCHRUN_2, cuda_count=2)


def test_accumulation_micro_batches_skip_the_gradient_all_reduce(tmp_path, monkeypatch):
    """DDP's no_sync on the wrapper (not the module inside), FSDP's switch toggled and restored."""
    import torch.distributed as dist

    from aam.training.distributed import no_sync

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
        entered = []
        real = ddp.no_sync
        monkeypatch.setattr(ddp, "no_sync", lambda: entered.append(1) or real())
        with no_sync(ddp, skip=True):
            pass
        with no_sync(ddp, skip=False):
            pass
        assert entered == [1]
    finally:
        dist.destroy_process_group()

    class Sharded(nn.Module):
        calls: list = []

        def set_requires_gradient_sync(self, flag: bool) -> None:
            self.calls.append(flag)

    sharded = Sharded()
    with no_sync(sharded, skip=True):
        assert sharded.calls == [False]
    assert sharded.calls == [False, True]


def test_parallel_flag_reaches_the_config_of_both_commands():
    from aam.cli.options import PRETRAIN_OPTIONS, FINETUNE_OPTIONS, build_training_config
    from aam.cli.pretrain import build_parser as pretrain_parser
    from aam.cli.train import build_parser as train_parser
    from aam.config import FinetuneConfig, PretrainConfig

    for parser, cls, options in ((pretrain_parser, PretrainConfig, PRETRAIN_OPTIONS),
                                 (train_parser, FinetuneConfig, FINETUNE_OPTIONS)):
        for argv, want in ((["--parallel", "fsdp"], "fsdp"), (["--parallel", "dp"], "dp"),
                           ([], "auto")):
            args = parser().parse_args(["--data-dir", "d", "--output-dir", "o", *argv])
            assert build_training_config(cls, args, options).train.parallel == want
        for old in ("--fsdp", "--distributed", "--data-parallel"):  # one flag: --parallel
            with pytest.raises(SystemExit):
                parser().parse_args(["--data-dir", "d", "--output-dir", "o", old])
