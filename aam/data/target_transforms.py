"""Invertible target transforms (registry ``TRANSFORMS``): none, minmax, zscore, per-category, log.

Statistics come from the training samples only and travel in the checkpoint as plain numbers
(``to_dict`` / ``transform_from_dict``), so predictions go back to the original scale.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from aam.errors import InputError, first_items

log = logging.getLogger(__name__)

MIN_GROUP_SIZE = 3  # zscore-category: smaller groups use the global mean and sd
Groups = Optional[Sequence[tuple]]

TRANSFORMS: dict[str, type["TargetTransform"]] = {}


def register_transform(name: str):
    """Class decorator: add a :class:`TargetTransform` to ``TRANSFORMS`` under ``name``."""

    def decorate(cls):
        cls.name = name
        TRANSFORMS[name] = cls
        return cls

    return decorate


def _scale(value: float, center: float) -> float:
    # A constant target (sd or range ~ 0) keeps scale 1 instead of dividing by zero.
    if not np.isfinite(value) or value <= 1e-12 * max(1.0, abs(center)):
        return 1.0
    return float(value)


class TargetTransform:
    """Invertible map of regression targets; subclasses implement ``_fit/_forward/_backward``.

    ``values`` are float arrays [N]; ``groups`` (zscore-category only) are the per-sample
    tuples of :func:`aam.data.targets.group_keys`. ``log-*`` transforms apply ``log1p`` first.
    """

    name = ""
    uses_log = False

    def __init__(self, normalize_by: Sequence[str] = ()) -> None:
        self.normalize_by = tuple(normalize_by)

    def fit(self, values, groups: Groups = None) -> "TargetTransform":
        """Learn the statistics from training values [N]; returns self."""
        y = self._input(values)
        if y.size == 0:
            raise InputError(f"target_transform {self.name} needs at least one training sample.")
        self._fit(y, groups)
        return self

    def transform(self, values, groups: Groups = None) -> np.ndarray:
        """Original scale [N] -> model scale [N] (float64)."""
        return self._forward(self._input(values), groups)

    def inverse(self, values, groups: Groups = None) -> np.ndarray:
        """Model scale [N] -> original scale [N] (float64)."""
        y = self._backward(np.asarray(values, dtype=np.float64), groups)
        return np.expm1(y) if self.uses_log else y

    def to_dict(self) -> dict:
        """Plain-Python state (str, float, lists) for the checkpoint."""
        return {"name": self.name, "normalize_by": list(self.normalize_by), **self._state()}

    def _input(self, values) -> np.ndarray:
        y = np.asarray(values, dtype=np.float64)
        if self.uses_log:
            bad = y[~(y > -1)]
            if bad.size:
                raise InputError(
                    f"target_transform {self.name} applies log1p and needs targets > -1; got "
                    f"{first_items(bad.tolist())} values <= -1. Use "
                    f"{self.name.removeprefix('log-')} instead."
                )
            y = np.log1p(y)
        return y

    def _fit(self, y, groups) -> None:
        pass

    def _forward(self, y, groups):
        return y

    def _backward(self, y, groups):
        return y

    def _state(self) -> dict:
        return {}

    def _load(self, state: dict) -> None:
        pass


@register_transform("none")
class Identity(TargetTransform):
    """Targets used as they are."""


@register_transform("minmax")
class MinMax(TargetTransform):
    """``(y - min) / (max - min)`` of the training values (range 0 -> scale 1)."""

    def _fit(self, y, groups):
        self.low = float(y.min())
        self.scale = _scale(float(y.max()) - self.low, self.low)

    def _forward(self, y, groups):
        return (y - self.low) / self.scale

    def _backward(self, y, groups):
        return y * self.scale + self.low

    def _state(self):
        return {"low": self.low, "scale": self.scale}

    def _load(self, state):
        self.low, self.scale = float(state["low"]), float(state["scale"])


@register_transform("zscore")
class ZScore(TargetTransform):
    """``(y - mean) / sd`` of the training values (sd 0 -> 1)."""

    def _fit(self, y, groups):
        self.mean = float(y.mean())
        self.sd = _scale(float(y.std()), self.mean)

    def _forward(self, y, groups):
        return (y - self.mean) / self.sd

    def _backward(self, y, groups):
        return y * self.sd + self.mean

    def _state(self):
        return {"mean": self.mean, "sd": self.sd}

    def _load(self, state):
        self.mean, self.sd = float(state["mean"]), float(state["sd"])


@register_transform("log-minmax")
class LogMinMax(MinMax):
    """minmax of ``log1p(y)``."""

    uses_log = True


@register_transform("log-zscore")
class LogZScore(ZScore):
    """zscore of ``log1p(y)``."""

    uses_log = True


@register_transform("zscore-category")
class ZScoreCategory(ZScore):
    """zscore with per-group mean and sd; groups are tuples of the ``normalize_by`` values.

    Groups with fewer than ``MIN_GROUP_SIZE`` training samples, or sd ~ 0, and groups unseen in
    training use the global mean and sd.
    """

    def _fit(self, y, groups):
        super()._fit(y, groups)
        keys = self._keys(groups, len(y))
        frame = pd.DataFrame({"key": keys, "y": y}).groupby("key", sort=True)["y"]
        stats = frame.agg(["count", "mean", "std"])  # std with ddof=1 needs >= 2 values
        self.stats: dict[tuple, tuple[float, float]] = {}
        for key, row in stats.iterrows():
            sd = float(np.sqrt((row["std"] ** 2) * (row["count"] - 1) / row["count"]))
            if row["count"] >= MIN_GROUP_SIZE and _scale(sd, row["mean"]) == sd:
                self.stats[key] = (float(row["mean"]), sd)
        fallback = len(stats) - len(self.stats)
        if fallback:
            log.info("zscore-category: %d of %d groups use global stats", fallback, len(stats))

    def _per_sample(self, groups, n):
        rows = [self.stats.get(k, (self.mean, self.sd)) for k in self._keys(groups, n)]
        arr = np.asarray(rows, dtype=np.float64).reshape(n, 2)
        return arr[:, 0], arr[:, 1]

    def _forward(self, y, groups):
        mean, sd = self._per_sample(groups, len(y))
        return (y - mean) / sd

    def _backward(self, y, groups):
        mean, sd = self._per_sample(groups, len(y))
        return y * sd + mean

    def group_index(self, groups) -> np.ndarray:
        """int64 [N]: 1..G for groups with their own stats (sorted), 0 for global fallback."""
        order = {k: i + 1 for i, k in enumerate(sorted(self.stats))}
        return np.asarray([order.get(k, 0) for k in self._keys(groups, None)], dtype=np.int64)

    def _keys(self, groups, n) -> list[tuple]:
        if groups is None or (n is not None and len(groups) != n):
            raise ValueError(f"zscore-category needs one group tuple per value ({n})")
        return [tuple(str(v) for v in g) for g in groups]

    def _state(self):
        groups = [{"group": list(k), "mean": m, "sd": s} for k, (m, s) in self.stats.items()]
        return {**super()._state(), "groups": groups}

    def _load(self, state):
        super()._load(state)
        self.stats = {
            tuple(g["group"]): (float(g["mean"]), float(g["sd"])) for g in state["groups"]
        }


def build_transform(name: str, normalize_by: Sequence[str] = ()) -> TargetTransform:
    """An unfitted transform from the registry; unknown names raise InputError listing them."""
    if name not in TRANSFORMS:
        raise InputError(
            f"Unknown target_transform '{name}'. Choose one of: {', '.join(sorted(TRANSFORMS))}."
        )
    if name == "zscore-category" and not normalize_by:
        raise InputError(
            "target_transform zscore-category needs normalize_by (the category columns whose "
            "groups get their own mean and sd); set --normalize-by COL."
        )
    return TRANSFORMS[name](normalize_by=normalize_by if name == "zscore-category" else ())


def transform_from_dict(state: dict) -> TargetTransform:
    """Rebuild a fitted transform from :meth:`TargetTransform.to_dict` output."""
    transform = build_transform(state["name"], tuple(state.get("normalize_by", ())))
    transform._load(state)
    return transform
