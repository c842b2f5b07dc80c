"""The penalised linear fits behind the abundance head's fitted start, on a design matrix.

:class:`Design` holds the head's features, the one-hot categories, the rest of the model's
prediction (an offset) and the target of some samples; :class:`Solver` fits ``offset + z @ w +
b`` by ridge (regression, closed form for every penalty) or L2-logistic regression
(classification, L-BFGS), and :func:`cv_losses` scores every penalty by grouped
cross-validation. :mod:`aam.training.head_fit` builds the design from a model and writes the
fit back into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

# L2 penalties tried, on the sum of the per-sample losses over centred features divided by one
# common scale (so each feature keeps its own spread: standardising every column made rare
# features as loud as common ones, and the fits extrapolated wildly on new subjects).
PENALTIES = tuple(10.0 ** (k / 2) for k in range(-6, 13))  # 1e-3 .. 1e6


@dataclass
class Design:
    """Head features, the rest of the model's prediction and the target of some samples."""

    ids: list
    features: Tensor  # [N, P] abundance head
    categories: Tensor  # [N, Q] one-hot categories (Q = 0 without categorical columns)
    offset: Tensor  # [N, K]
    target: Tensor  # [N]

    def rows(self, index) -> "Design":
        index = torch.as_tensor(index, dtype=torch.long)
        return Design([self.ids[i] for i in index.tolist()], self.features[index],
                       self.categories[index], self.offset[index], self.target[index])


class Solver:
    """Penalised linear fits of ``offset + z @ weight + bias`` to the target.

    ``z`` is the head's features, centred and divided by one common scale (their mean spread,
    so the block's variances sum to its number of columns ``P``), then the centred one-hot
    categories times one factor that makes their variances sum to ``P`` too: in kernel terms the
    fit is kernel ridge over the sum of a sequence kernel and a metadata kernel of equal weight.
    The metadata kernel has rank (number of categories), so each of its directions is far
    louder than any one direction of the head's features and the main effects are shrunk much
    less than the head's terms at the same penalty.
    """

    def __init__(self, train: Design, loss_fn: Callable, classification: bool) -> None:
        self.mean = train.features.mean(0)
        variance = (train.features - self.mean).pow(2).mean(0)  # [P]
        spread = variance.mean().sqrt()
        # columns that never vary over these samples (e.g. identity columns of ASVs they do not
        # hold) get weight 0 whatever the penalty: they are left out of the solve
        self.varies = torch.cat([variance > 0, torch.ones(train.categories.shape[1],
                                                          dtype=torch.bool)])
        self.scale = float(spread) if float(spread) > 0 else 1.0
        self.cat_mean = train.categories.mean(0)
        variance = float((train.categories - self.cat_mean).pow(2).mean(0).sum())
        self.cat_factor = math.sqrt(train.features.shape[1] / variance) if variance > 0 else 1.0
        self.train, self.loss_fn, self.classification = train, loss_fn, classification

    def z(self, design: Design) -> Tensor:
        return torch.cat([(design.features - self.mean) / self.scale,
                          (design.categories - self.cat_mean) * self.cat_factor], dim=1)

    def raw(self, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(head matrix [P, K], category matrix [Q, K], intercept [K]) on the raw features."""
        p = self.mean.shape[0]
        head, cats = weight[:p] / self.scale, weight[p:] * self.cat_factor
        intercept = bias - self.mean @ head - self.cat_mean @ cats
        return head, cats, intercept

    def fits(self, penalties) -> list[tuple[Tensor, Tensor]]:
        """(weight [P, K], bias [K]) for each penalty, on the standardised-by-one-scale
        features."""
        z, off, y = self.z(self.train), self.train.offset, self.train.target
        if not self.classification:
            return self._ridge(z, y.double() - off[:, 0], penalties)
        k = off.shape[1]
        basis, inputs = self._row_space(z)
        weight = torch.zeros(inputs.shape[1], k, dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        out = {}
        for i in sorted(range(len(penalties)), key=lambda i: -penalties[i]):  # strongest first:
            _lbfgs(inputs, off, y, self.loss_fn, penalties[i] / len(y), weight, bias)  # warm
            full = torch.zeros(z.shape[1], k, dtype=torch.float64)  # starts
            full[self.varies] = weight.detach() if basis is None else basis @ weight.detach()
            out[i] = (full, bias.detach().clone())
        return [out[i] for i in range(len(penalties))]

    def _row_space(self, z: Tensor) -> tuple[Tensor | None, Tensor]:
        """(basis [P', r] or None, inputs [N, r]) of the L2-logistic fit: the varying columns,
        or with many more of them than samples (ASV identity) their coordinates in the row
        space of ``z`` (the penalised optimum lies in it, and ``|w|`` there is ``|beta|``)."""
        varying = z[:, self.varies]
        if varying.shape[1] <= max(2 * varying.shape[0], 4096):
            return None, varying
        u, s, vt = torch.linalg.svd(varying, full_matrices=False)
        rank = int((s > s[0] * 1e-10).sum()) if len(s) else 0
        return vt[:rank].T, u[:, :rank] * s[:rank]

    def _ridge(self, z: Tensor, residual: Tensor, penalties) -> list[tuple[Tensor, Tensor]]:
        """Ridge in closed form for every penalty from one decomposition: the SVD of the
        centred features, or with many more features than samples (ASV identity: thousands of
        columns) the eigendecomposition of their [N, N] Gram matrix (the same solutions)."""
        centre, z_mean = residual.mean(), z.mean(0)
        zc = (z - z_mean)[:, self.varies]
        target = residual - centre
        out = []
        if zc.shape[1] > max(2 * zc.shape[0], 4096):
            evals, u = torch.linalg.eigh(zc @ zc.T)
            proj = u.T @ target
            solve = lambda penalty: zc.T @ (u @ (proj / (evals.clamp_min(0) + penalty)))  # noqa: E731
        else:
            u, s, vt = torch.linalg.svd(zc, full_matrices=False)
            proj = u.T @ target
            solve = lambda penalty: vt.T @ (s / (s * s + penalty) * proj)  # noqa: E731
        for penalty in penalties:
            w = torch.zeros(z.shape[1], dtype=z.dtype)
            w[self.varies] = solve(penalty)
            out.append((w.unsqueeze(1), (centre - z_mean @ w).reshape(1)))
        return out

    def loss(self, design: Design, weight: Tensor, bias: Tensor) -> float:
        with torch.no_grad():
            pred = design.offset + self.z(design) @ weight + bias
            return float(self.loss_fn(pred, design.target))


def _lbfgs(z: Tensor, offset: Tensor, target: Tensor, loss_fn: Callable, penalty: float,
           weight: Tensor, bias: Tensor) -> None:
    """Minimise ``loss_fn(offset + z @ weight + bias, target) + penalty * |weight|^2`` in place
    (``loss_fn`` is a mean over samples, hence ``penalty`` per sample)."""
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=300, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(offset + z @ weight + bias, target) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)


def cv_losses(train: Design, groups: dict, loss_fn: Callable, classification: bool,
               folds: int) -> list[float]:
    """Mean held-out loss of each penalty over grouped folds of the training samples."""
    from aam.data.splits import SplitConfig, split_samples

    labels = [groups[s] for s in train.ids]
    position = {s: i for i, s in enumerate(train.ids)}
    totals = torch.zeros(len(PENALTIES), dtype=torch.float64)
    for fold in split_samples(train.ids, SplitConfig(folds=folds, seed=0), labels):
        inside = train.rows([position[s] for s in fold.train])
        held = train.rows([position[s] for s in fold.val])
        solver = Solver(inside, loss_fn, classification)
        for i, (w, b) in enumerate(solver.fits(PENALTIES)):
            totals[i] += solver.loss(held, w, b) * len(held.ids)
    return (totals / len(train.ids)).tolist()
