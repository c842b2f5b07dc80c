"""Integrated gradients over the ASV abundance input of a trained :class:`Predictor`.

The model sees each ASV occurrence's abundance as a few features
(:func:`aam.models.encoder.count_features`: ``[log1p(count), clr / 4, count / depth]``), read by
the sample encoder's count embedding (``SampleEncoder.count_emb``) and by the abundance head.
We integrate the gradient of the output along the straight path from the baseline (the
features every ASV of the sample would have at a count of 0, the sample's own CLR centre kept;
the ASV's sequence stays in the sample) to the observed features, so the attribution of one
(sample, ASV) occurrence is ``x . mean_alpha grad f(alpha x)`` summed over its features
(Sundararajan et al. 2017). Completeness: the attributions of a sample sum to
``f(x) - f(baseline)`` up to the quadrature error, which :func:`explain_batch` returns.

The nucleotide encoder depends on the sequence only, so it runs once per batch (its distinct
ASVs; ``Batch.asv_inverse`` maps them back to every occurrence) and every path step re-runs only
the layers from the count embedding on.

References
----------
Sundararajan, M., Taly, A., Yan, Q. (2017). Axiomatic Attribution for Deep Networks. ICML 2017,
arXiv:1703.01365.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from aam.data.batch import Batch
from aam.models.attention import AttentionPooling
from aam.models.encoder import COUNT_FEATURES, EncoderOutput
from aam.models.heads import MaskedAttentionPool
from aam.models.predictor import Predictor


@dataclass
class BatchExplanation:
    """Attributions and attention of one batch (CPU tensors).

    Attributes
    ----------
    attribution : FloatTensor [B, S, K]    per ASV occurrence and output (0 at padding)
    output : FloatTensor [B, K]            f(x): regression value (model scale) or log-probability
    baseline_output : FloatTensor [B, K]   f(baseline): every abundance feature 0
    encoder_pool : FloatTensor [B, S]      the sample encoder's attention-pooling weights
    target_pool : FloatTensor [B, S] or None   the target pooling's weights (fusions that pool)
    cross_attention : FloatTensor [B, S, T] or None   cross-attention fusion: weight of each ASV
        position on each metadata token, mean over heads
    extras : dict[str, Tensor]             other fusion diagnostics (gate, metadata attention)
    """

    attribution: Tensor
    output: Tensor
    baseline_output: Tensor
    encoder_pool: Tensor
    target_pool: Optional[Tensor]
    cross_attention: Optional[Tensor]
    extras: dict


class _FixedAsvVectors:
    """Stands in for the model's encoder cache: the batch's ASV vectors, computed once, go
    through the sample encoder with gradients (the real cache runs without them)."""

    def __init__(self, vectors: Tensor) -> None:
        self.vectors = vectors

    def encode(self, encoder, batch: Batch) -> EncoderOutput:
        return encoder.encode_samples(self.vectors, batch)


def zero_count_features(x: Tensor) -> Tensor:
    """The count features [B, S, F] each occurrence would have at a count of 0 (0 at padding).

    Every part is 0 at a count of 0 except ``clr``, which becomes ``(log(1e-6) - centre) / 4``;
    the sample's centre is recovered from ``x`` itself, since ``4 * clr = log(relative + 1e-6)
    - centre`` at every real ASV (the relative abundance is the last part).
    """
    base = torch.zeros_like(x)
    i = COUNT_FEATURES.index("clr")
    shift = (torch.log(x[..., -1] + 1e-6) - math.log(1e-6)) / 4.0  # 0 at padding
    base[..., i] = x[..., i] - shift
    return base


class _AbundancePath:
    """Forward hook on the count features (``SampleEncoder.count_input``, read by the count
    embedding and the abundance head): replaces them by ``alpha * x`` (a leaf that requires
    grad) and records ``x`` and the pooling weights of the pass."""

    def __init__(self, model: Predictor) -> None:
        self.alpha = 1.0
        self.features: Optional[Tensor] = None  # x - baseline [B, S, F]
        self.scaled: Optional[Tensor] = None  # alpha * x, requires grad
        self.pools: dict[str, Tensor] = {}
        self.handles = [model.encoder.sample.count_input.register_forward_hook(self._scale),
                        model.encoder.pool.register_forward_hook(self._encoder_pool)]
        target_pool = _target_pool(model)
        if target_pool is not None:
            self.handles.append(target_pool.register_forward_pre_hook(self._target_pool))

    def _scale(self, _module, _args, output):
        x = output.detach()
        base = zero_count_features(x)
        self.features = x - base
        self.scaled = (base + self.alpha * self.features).requires_grad_(True)
        return self.scaled

    def _encoder_pool(self, _module, _args, output):
        self.pools["encoder"] = output[1].detach()

    def _target_pool(self, module, args):
        with torch.no_grad():
            self.pools["target"] = AttentionPooling.forward(module, *args)[1].detach()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _target_pool(model: Predictor) -> Optional[MaskedAttentionPool]:
    """The attention pooling that reads the target encoder's output, when the model has one."""
    pool = getattr(model, "pool", None) or getattr(getattr(model, "fusion", None), "pool", None)
    return pool if isinstance(pool, MaskedAttentionPool) else None


def model_outputs(model: Predictor, prediction: Tensor) -> Tensor:
    """What is explained: the regression value (model scale) or per-class log-probabilities."""
    prediction = prediction.float()
    if model.cfg.task == "classification":
        return torch.log_softmax(prediction, dim=-1)
    return prediction


def explain_batch(model: Predictor, batch: Batch, steps: int = 32) -> BatchExplanation:
    """Integrated gradients of every output over the abundance features of ``batch``.

    Parameters
    ----------
    model : Predictor
        In eval mode (dropout off); stays unchanged (hooks are removed on return).
    batch : Batch
        On the model's device.
    steps : int
        Midpoint-rule steps along the path from the baseline to the input.

    Returns
    -------
    BatchExplanation
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    previous_cache = model.encoder_cache
    with torch.no_grad():
        vectors = model.encoder.encode_asvs(batch.unique_tokens.long())  # [U, D]
    model.encoder_cache = _FixedAsvVectors(vectors)
    path = _AbundancePath(model)
    try:
        with torch.enable_grad():
            total = None
            for i in range(steps):
                path.alpha = (i + 0.5) / steps
                outputs = model_outputs(model, model(batch).prediction)  # [B, K]
                grads = [torch.autograd.grad(outputs[:, k].sum(), path.scaled,
                                             retain_graph=k < outputs.shape[1] - 1)[0]
                         for k in range(outputs.shape[1])]
                step = torch.stack(grads, dim=-1)  # [B, S, F, K]
                total = step if total is None else total + step
        with torch.no_grad():
            path.alpha = 0.0
            baseline = model_outputs(model, model(batch).prediction)
            path.alpha = 1.0
            out = model(batch)
            output = model_outputs(model, out.prediction)
        attribution = (path.features.unsqueeze(-1) * total / steps).sum(2)  # [B, S, K]
        cross = out.attention
        if cross is not None:
            cross = cross.float().mean(1)  # [B, S, T]
        extras = {k: v.detach().float().cpu() for k, v in out.extras.items()}
        target = path.pools.get("target")
        return BatchExplanation(
            attribution.detach().float().cpu(), output.detach().cpu(), baseline.detach().cpu(),
            path.pools["encoder"].float().cpu(),
            None if target is None else target.float().cpu(),
            None if cross is None else cross.detach().cpu(), extras)
    finally:
        path.remove()
        model.encoder_cache = previous_cache


__all__ = ["BatchExplanation", "explain_batch", "model_outputs"]
