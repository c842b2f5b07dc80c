"""Pick the torch device from ``TrainConfig.device`` (auto -> cuda when available, else cpu)."""

from __future__ import annotations

import torch

from aam.errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N`` into a ``torch.device``.

    Raises
    ------
    InputError
        For an unknown name, or a CUDA device when CUDA is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"Unknown device {name!r}. Use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but CUDA is not available on this "
                             "machine; use --device cpu or --device auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s).")
    elif device.type != "cpu":
        raise InputError(f"Unsupported device {name!r}. Use auto, cpu, cuda or cuda:N.")
    return device
