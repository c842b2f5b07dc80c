"""Multi-process and multi-GPU training: strategy choice, process group, wrapping, reductions.

Under ``torchrun`` the environment (RANK, LOCAL_RANK, WORLD_SIZE) selects DDP by default; the
backend is ``nccl`` on CUDA and ``gloo`` on CPU. FSDP is PyTorch's ``fully_shard`` (FSDP2: one
unit per trainable transformer block plus the root); checkpoints hold a full state dict that
rank 0 writes, with the optimizer state keyed by parameter name under every strategy, so a run
may be resumed under another strategy or world size. DataParallel is single-process multi-GPU
and needs CUDA (``aam.training.data_parallel``). Batch size is per process (per rank):
the global batch is ``batch_size x world_size``, and distance pairs are formed within the batch
each rank sees. Under ``--parallel dp`` the one process's batch is split over its GPUs.
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

from aam.errors import InputError

log = logging.getLogger(__name__)

STRATEGIES = ("none", "ddp", "fsdp", "dp")
_FLAG_OF = {"ddp": "--parallel ddp", "fsdp": "--parallel fsdp", "dp": "--parallel dp"}


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: strategy, rank, world size and its device."""

    strategy: str = "none"
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    devices: tuple[torch.device, ...] = ()  # --parallel dp: every GPU this process drives

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.strategy in ("ddp", "fsdp")

    @property
    def shards_state(self) -> bool:
        """Every rank takes part in gathering the full state (FSDP)."""
        return self.strategy == "fsdp"


def resolve_strategy(requested: str, env: Mapping[str, str] | None = None,
                     cuda_count: int | None = None, device: str = "auto") -> tuple[str, int]:
    """Validate ``requested`` against the environment; return (strategy, world_size).

    The checks run in one fixed order for every command: strategy name, launcher, CUDA. The
    one-GPU-per-process check applies only when the processes use CUDA (``device`` not cpu).
    """
    env = os.environ if env is None else env
    cuda_count = torch.cuda.device_count() if cuda_count is None else cuda_count
    world_size = int(env.get("WORLD_SIZE", "1"))
    under_launcher = "RANK" in env and "WORLD_SIZE" in env
    if requested not in (*STRATEGIES, "auto"):
        raise InputError(f"Unknown distributed strategy '{requested}'. Choose one of: "
                         f"auto, {', '.join(STRATEGIES)}.")
    strategy = requested
    if requested == "auto":
        strategy = "ddp" if under_launcher and world_size > 1 else "none"
    if strategy in ("ddp", "fsdp") and not under_launcher:
        raise InputError(
            f"{_FLAG_OF[strategy]} needs a multi-process launcher: run the command under "
            "'torchrun --standalone --nproc_per_node=N -m aam.cli ...'."
        )
    if strategy == "dp":
        if cuda_count < 1:
            raise InputError("--parallel dp needs CUDA GPUs, and none are visible. Drop the "
                             "flag to train on the CPU, or use torchrun for several processes.")
        if under_launcher and world_size > 1:
            raise InputError("--parallel dp is single-process; do not start it under torchrun "
                             "with several processes (use --parallel ddp or fsdp there).")
    if strategy in ("ddp", "fsdp") and device != "cpu" and cuda_count > 0 and \
            world_size > cuda_count:
        raise InputError(
            f"torchrun started {world_size} processes but only {cuda_count} GPU(s) are visible; "
            f"use --nproc_per_node={cuda_count} or make more GPUs visible (CUDA_VISIBLE_DEVICES)."
        )
    return strategy, (world_size if strategy in ("ddp", "fsdp") else 1)


def init_distributed(requested: str = "auto", device: str = "auto") -> DistContext:
    """Resolve the strategy, start the process group if needed, and pick this rank's device."""
    strategy, world_size = resolve_strategy(requested, device=device)
    rank = int(os.environ.get("RANK", "0")) if world_size > 1 else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world_size > 1 else 0
    use_cuda = (torch.cuda.is_available() and device in ("auto", "cuda")
                or device.startswith("cuda:"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device '{device}' was asked for but CUDA is not available; "
                         "use --device cpu or auto.")
    if use_cuda:
        index = local_rank if world_size > 1 or ":" not in device else int(device.split(":")[1])
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
    else:
        dev = torch.device("cpu")
    backend = None
    if strategy in ("ddp", "fsdp"):
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        if rank == 0:
            log.info("distributed: %s with %d processes, backend %s, %d GPU(s) visible",
                     strategy, world_size, backend, torch.cuda.device_count())
    devices: tuple[torch.device, ...] = ()
    if strategy == "dp":
        devices = tuple(torch.device("cuda", i) for i in range(torch.cuda.device_count()))
        dev = devices[0]
        torch.cuda.set_device(dev)
        log.info("data-parallel: one process, the batch split by samples over %d GPU(s)",
                 len(devices))
    return DistContext(strategy, rank, local_rank, world_size, dev, backend, devices)


@contextmanager
def distributed_session(requested: str = "auto", device: str = "auto") -> Iterator[DistContext]:
    """The one entry for ``aam pretrain`` and ``aam train``: validate the strategy (flags,
    launcher, GPUs, in that order), start the process group, and tear it down at the end."""
    ctx = init_distributed(requested, device)
    package_log = logging.getLogger("aam")
    level = package_log.level
    if not ctx.is_main:  # one copy of each progress line, from rank 0
        package_log.setLevel(logging.WARNING)
    try:
        yield ctx
    finally:
        package_log.setLevel(level)
        shutdown(ctx)


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Wrap for the strategy (the model must already be on ``ctx.device``).

    DDP looks for unused parameters only when some trainable parameter could miss a gradient
    (count or nucleotide heads off in a step, frozen parts): ``find_unused_parameters`` costs a
    graph traversal per step, so a model may say ``always_uses_all_parameters = True``.
    """
    if ctx.strategy == "ddp":
        if isinstance(model, nn.parallel.DistributedDataParallel):
            return model
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        all_used = bool(getattr(model, "always_uses_all_parameters", False))
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=not all_used)
    if ctx.strategy == "fsdp":
        return _shard(model, ctx)
    return model


def parallel_loss(objective, model: nn.Module, batch, ctx: DistContext):
    """The objective's ``(loss, logs)``; under ``--parallel dp`` with several GPUs, the batch is
    split over them (``aam.training.data_parallel``)."""
    if ctx.strategy == "dp" and len(ctx.devices) > 1:
        from aam.training.data_parallel import split_loss

        return split_loss(objective, model, batch, ctx.devices)
    return objective.loss(model, batch)


def _shard(model: nn.Module, ctx: DistContext) -> nn.Module:
    """FSDP2 in place: one unit per transformer block with trainable weights, then the root.

    Frozen blocks (a frozen base) stay in the root unit: their outputs may come from a cache on
    one rank and not on another, and a per-block all-gather would then wait forever.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from aam.models.attention import TransformerBlock

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    for module in model.modules():
        if isinstance(module, TransformerBlock) and any(p.requires_grad
                                                        for p in module.parameters()):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def evaluation_copy(model: nn.Module, ctx: DistContext) -> nn.Module | None:
    """A plain copy to validate on under FSDP (taken before sharding); None otherwise."""
    return copy.deepcopy(model) if ctx.strategy == "fsdp" else None


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def _full_options(cpu_offload: bool, strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload, strict=strict)


def full_state_dict(model: nn.Module, ctx: DistContext) -> dict[str, Any]:
    """A complete state dict (FSDP: a collective call; rank 0 gets it on the CPU)."""
    if ctx.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(unwrap(model), options=_full_options(cpu_offload=True))
    return unwrap(model).state_dict()


def all_reduce_sums(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Sum each value over ranks (identity on one process)."""
    if not ctx.is_distributed or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                          device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.tolist()))


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-item list on one process)."""
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True when ``flag`` is true on at least one rank (so every rank takes the same branch)."""
    if not ctx.is_distributed:
        return bool(flag)
    return all_reduce_sums({"flag": float(bool(flag))}, ctx)["flag"] > 0


@contextmanager
def no_sync(model: nn.Module, skip: bool) -> Iterator[None]:
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on accumulation micro-batches
    (``skip`` True); the stepping micro-batch then reduces the accumulated gradients."""
    wrapper = getattr(model, "_orig_mod", model) if skip else None  # DDP, or FSDP's module
    if wrapper is not None and hasattr(wrapper, "no_sync"):
        with wrapper.no_sync():
            yield
    elif wrapper is not None and hasattr(wrapper, "set_requires_gradient_sync"):
        wrapper.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapper.set_requires_gradient_sync(True)
    else:
        yield


@contextmanager
def eval_module(model: nn.Module, ctx: DistContext,
                eval_copy: nn.Module | None = None) -> Iterator[nn.Module]:
    """The module to validate on, with no per-forward collectives (ranks may see different
    numbers of validation batches): the plain module, or under FSDP ``eval_copy`` (from
    :func:`evaluation_copy`) loaded with the gathered full weights (a collective call)."""
    if ctx.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(unwrap(model), options=_full_options(cpu_offload=False))
        eval_copy.load_state_dict(state)
        eval_copy.train(model.training)
        yield eval_copy
    elif ctx.strategy == "ddp":
        yield unwrap(model)
    else:
        yield model


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """Clip the global gradient norm (with FSDP's sharded gradients, over all shards)."""
    torch.nn.utils.clip_grad_norm_(unwrap(model).parameters(), max_norm)


def optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer,
                         ctx: DistContext) -> dict[str, Any]:
    """The complete optimizer state keyed by parameter name, the same for every strategy
    (FSDP: gathered from the shards in a collective call; rank 0 gets it on the CPU)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(unwrap(model), optimizer,
                                    options=_full_options(cpu_offload=ctx.strategy == "fsdp"))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                         state: dict[str, Any]) -> None:
    """Load what :func:`optimizer_state_dict` returned (FSDP: each rank keeps its shard).

    Every rank passes the full state it read from the checkpoint. Parameters that never had a
    gradient (a head the task does not use) have no saved state, hence ``strict=False``.
    """
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(unwrap(model), optimizer, state,
                             options=_full_options(cpu_offload=False, strict=False))


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Tear down the process group started by :func:`init_distributed`."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
