"""Single-process multi-GPU training (``--parallel dp``): each GPU computes the loss of its
share of the batch.

``nn.DataParallel`` scatters every tensor along dim 0, which cannot cut an AAM :class:`Batch`:
its samples share one table of distinct ASV sequences, and its distance matrix is over sample
pairs. So the batch is split by samples instead (:meth:`Batch.split`: each part keeps the ASV
rows its samples use), the model is replicated on every device
(``torch.nn.parallel.replicate``: gradients flow back to the original parameters on the first
device), each replica runs the objective's ``loss`` on its part in its own thread
(``parallel_apply``, which carries autocast and grad mode over), and the part losses are
averaged on the first device, weighted by part size.

The gradient is then DDP's: a loss that is a mean over samples (the target loss) equals the
one-device loss of the whole batch; distance pairs are formed within each GPU's part, as within
each process's batch under torchrun (an objective may set ``min_part_size``: pretraining needs
2 samples per part). Validation runs on the first GPU.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from aam.data.batch import Batch


class _PartLoss(nn.Module):
    """``objective.loss(replica, part)`` as a module, so ``parallel_apply`` can call it.

    ``parallel_apply`` re-enters autocast in its threads with the default dtype (float16), so
    the caller's autocast dtype (bf16) is restored here.
    """

    def __init__(self, objective: Any, replica: nn.Module, autocast: tuple[bool, Any]) -> None:
        super().__init__()
        self.objective, self.replica, self.autocast = objective, replica, autocast

    def forward(self, part: Batch) -> tuple[Tensor, dict[str, float]]:
        enabled, dtype = self.autocast
        with torch.autocast("cuda", dtype=dtype, enabled=enabled):
            return self.objective.loss(self.replica, part)


def split_loss(objective: Any, model: nn.Module, batch: Batch,
               devices: Sequence[torch.device]) -> tuple[Tensor, dict[str, float]]:
    """The objective's loss of ``batch`` computed in parts, one per device (see module doc).

    On CUDA the model is replicated and the parts run in parallel; on the CPU (tests) the parts
    run one after another on ``model`` itself, which gives the same numbers.
    """
    parts = batch.split(len(devices), min_size=getattr(objective, "min_part_size", 1))
    if len(parts) == 1:
        return objective.loss(model, batch)
    devices = list(devices)[:len(parts)]
    parts = [part.to(device, non_blocking=True) for part, device in zip(parts, devices)]
    if devices[0].type == "cuda":
        from torch.nn.parallel import parallel_apply, replicate

        autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
        replicas = replicate(model, devices, detach=not torch.is_grad_enabled())
        results = parallel_apply([_PartLoss(objective, r, autocast) for r in replicas],
                                 [(part,) for part in parts], devices=devices)
    else:
        results = [objective.loss(model, part) for part in parts]
    weights = [part.size / batch.size for part in parts]
    loss = sum(w * part_loss.to(devices[0]) for w, (part_loss, _) in zip(weights, results))
    logs = {key: sum(w * logs[key] for w, (_, logs) in zip(weights, results))
            for key in results[0][1]}
    return loss, logs
