"""The names of the categorical fusion strategies, torch-free, so the config can check a name
without importing the models (``aam.models.fusion`` registers one class under each name and a
test keeps the two equal)."""

from __future__ import annotations

from aam.errors import InputError

FUSION_NAMES = ("concat", "add", "gmu", "cross-attention", "perceiver")


def check_fusion_name(name: str) -> None:
    """Raise InputError for a name that is not a fusion (listing the known ones)."""
    if name not in FUSION_NAMES:
        raise InputError(f"Unknown fusion '{name}'. Choose one of: "
                         f"{', '.join(sorted(FUSION_NAMES))}.")
