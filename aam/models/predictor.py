"""The fine-tuning model: pretrained encoder + count head + categorical fusion + target head."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from aam.config import FinetuneConfig
from aam.data.batch import Batch
from aam.errors import InputError
from aam.models.asv_cache import EncoderCache
from aam.models.encoder import COUNT_FEATURES, AAMEncoder, EncoderOutput
from aam.models.fusion import build_fusion
from aam.models.heads import (AbundanceHead, CategoryEffects, CategoryEmbeddings, CountHead,
                              MaskedAttentionPool, OutputScaling, TargetEncoder, TargetHead)
from aam.models.identity import IdentityHead
from aam.models.start import SequenceSnapshot, fill_missing_snapshot
from aam.validate import load_error_reason

log = logging.getLogger(__name__)


@dataclass
class PredictorOutput:
    """What :class:`Predictor` returns for a batch.

    Attributes
    ----------
    prediction : FloatTensor [B, out_dim]
        Regression value (transformed scale) or class logits.
    count_pred : FloatTensor [B, S] or None
        Predicted log relative abundance per ASV; None when the count head is off.
    encoder : EncoderOutput
    extras : dict[str, Tensor]
        The fusion's per-sample diagnostics (``FusionOut.extras``: gate values, ...).
    attention : FloatTensor [B, H, S, T] or None
        The per-position weights over metadata tokens a fusion declares
        (``FusionOut.attention``: cross-attention).
    """

    prediction: Tensor
    count_pred: Optional[Tensor]
    encoder: EncoderOutput
    extras: dict[str, Tensor] = field(default_factory=dict)
    attention: Optional[Tensor] = None


class Predictor(nn.Module):
    """Encoder (optionally frozen) -> target encoder -> fusion with categories -> target head,
    plus the linear start: the abundance head and the category main effects.

    The prediction is ``target head + abundance head + category effects`` (then the optional
    per-category output scaling, the identity at first). The target head's last layer starts
    at zero, so before fine-tuning the prediction is exactly the linear start, which
    ``aam train`` fits in closed form; the transformer path then learns what it misses
    (interactions). The abundance head's random features come from its own generator seeded
    with ``train.seed``, so they do not depend on the fusion or categorical settings.

    Without the attention path (``attention_path`` off: the head-only ablation) there is no
    count head, target encoder, fusion or target head: the prediction is the linear start plus
    an :class:`Intercept`, and ``aam train`` runs no epoch. The encoder is still built (the
    abundance head reads its ASV vectors; a pretrained encoder loads as usual).

    Parameters
    ----------
    cfg : FinetuneConfig
        ``fusion.cardinalities`` (one per ``data.categorical_columns``) and ``out_dim`` must be
        set from the data before construction.

    Notes
    -----
    With ``freeze_base`` the encoder's outputs come from ``encoder_cache``
    (:class:`~aam.models.asv_cache.EncoderCache`): ASV vectors by global ASV index and, unless
    ASVs are sampled at random, whole sample outputs by sample index, kept across epochs. The
    cache is not part of the ``state_dict`` and is emptied whenever encoder weights are loaded.

    The fitted abundance head reads ASV vectors that do not move
    while the rest trains (``abundance_head_encoder``): ``frozen`` (default), the encoder's
    nucleotide encoder and ASV norm are not trained (eval mode, no gradients); ``snapshot``, a
    frozen copy of them (``start_encoder``, :class:`~aam.models.start.SequenceSnapshot`) that
    :func:`~aam.training.head_fit.fit_abundance_head` takes before it fits, while the encoder
    trains; ``live``, the trained encoder's vectors (the head's fit is scrambled as they move).
    """

    def __init__(self, cfg: FinetuneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        columns = cfg.data.categorical_columns
        if len(cfg.fusion.cardinalities) != len(columns):
            raise InputError(f"fusion.cardinalities has {len(cfg.fusion.cardinalities)} entries "
                             f"but there are {len(columns)} categorical columns.")
        self.encoder = AAMEncoder(cfg.model)
        self.count_head: Optional[CountHead] = None
        self.head: Optional[TargetHead] = None
        self.intercept: Optional[Intercept] = None
        if cfg.builds_attention_path:
            self._build_attention_path(cfg)
        else:  # the fitted start alone: its constant needs a home without the target head
            self.intercept = Intercept(cfg.out_dim)
        self.abundance_head = _abundance_head(cfg)
        self.category_effects = (CategoryEffects(cfg.fusion.cardinalities, cfg.out_dim)
                                 if columns else None)
        self.scaling_column = scaling_column_index(cfg)
        self.output_scaling = None
        if self.scaling_column is not None:
            self.output_scaling = OutputScaling(cfg.fusion.cardinalities[self.scaling_column],
                                                cfg.out_dim)
        self.start_encoder: Optional[SequenceSnapshot] = None
        self.start_mode = start_mode(cfg)
        if self.start_mode == "snapshot":
            self.start_encoder = SequenceSnapshot(self.encoder)
        elif self.start_mode == "frozen":
            self.encoder.nucleotide.requires_grad_(False)
            self.encoder.asv_norm.requires_grad_(False)
        self.encoder_cache: Optional[EncoderCache] = None
        if cfg.freeze_base:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
            self.encoder_cache = EncoderCache(sample_level=cfg.data.asv_sampling != "random")
        self.encoder.register_load_state_dict_pre_hook(self._forget_encoder_outputs)

    def _build_attention_path(self, cfg: FinetuneConfig) -> None:
        """Count head, target encoder, category embeddings + fusion (or pooling), target head:
        what fine-tuning trains as a residual of the fitted start."""
        dim, model = cfg.model.embedding_dim, cfg.model
        self.count_head = CountHead(dim) if cfg.count_prediction else None
        self.target_encoder = TargetEncoder(dim, model.attention_heads, cfg.target_layers,
                                            model.ff_mult, model.dropout)
        if cfg.data.categorical_columns:
            self.category_embeddings = CategoryEmbeddings(cfg.fusion.cardinalities, dim,
                                                          cfg.fusion.category_dim)
            self.fusion = build_fusion(cfg.fusion, dim)
        else:
            self.pool = MaskedAttentionPool(dim)
        self.head = TargetHead(dim, cfg.out_dim, model.dropout)

    def _forget_encoder_outputs(self, *_args) -> None:
        """Empty the cache before encoder weights are replaced."""
        if self.encoder_cache is not None:
            self.encoder_cache.clear()

    def train(self, mode: bool = True) -> "Predictor":
        """Like ``nn.Module.train``, but a frozen encoder stays in eval mode (no dropout), and
        the encoder's ASV norm always uses its pretraining statistics: in training mode batch
        norm would standardise each ASV by the other ASVs of its batch and move the running
        statistics, so an ASV's vector (which the abundance head reads) would drift with the
        batches instead of depending on its sequence only."""
        super().train(mode)
        if self.cfg.freeze_base:
            self.encoder.eval()
        if self.start_mode == "frozen":  # no dropout either: the head's vectors stay fixed
            self.encoder.nucleotide.eval()
        self.encoder.asv_norm.eval()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if self.start_encoder is not None:
            fill_missing_snapshot(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def take_start_snapshot(self) -> None:
        """Copy the encoder's sequence part into ``start_encoder`` (before the head is fitted;
        a no-op without a snapshot)."""
        if self.start_encoder is not None:
            self.start_encoder.take(self.encoder)

    def output_bias(self) -> Tensor:
        """The constant of the prediction [out_dim] (the fitted start's intercept is folded
        into it): the target head's last bias, or the intercept without an attention path."""
        if self.head is not None:
            return self.head.net[-1].bias
        assert self.intercept is not None
        return self.intercept.bias

    def start_inputs(self, batch: Batch, enc: EncoderOutput) -> Tensor:
        """What the abundance head reads per ASV occurrence: vocabulary columns [B, S] for
        the identity head, else the ASV vectors of :meth:`start_vectors` [B, S, D]."""
        if isinstance(self.abundance_head, IdentityHead):
            return self.abundance_head.columns(batch)
        return self.start_vectors(batch, enc)

    def start_vectors(self, batch: Batch, enc: EncoderOutput) -> Tensor:
        """The ASV vectors [B, S, D] the abundance head reads: the snapshot's, else the
        encoder's."""
        if self.start_encoder is not None:
            return self.start_encoder(batch).to(enc.asv_vectors.dtype)
        return enc.asv_vectors

    def encode(self, batch: Batch, mask_rate: float = 0.0) -> EncoderOutput:
        """The encoder's output for ``batch``: from ``encoder_cache`` when the encoder is
        deterministic (frozen, or in eval mode inside :func:`~aam.models.asv_cache.cached_encoder`),
        else a forward pass (with nucleotide masking when the base is trained)."""
        frozen = self.cfg.freeze_base
        if self.start_mode == "frozen":  # masking would move the fitted head's input
            mask_rate = 0.0
        deterministic = frozen or (not self.encoder.training and mask_rate == 0)
        if self.encoder_cache is not None and deterministic:
            return self.encoder_cache.encode(self.encoder, batch)
        return self.encoder(batch, mask_rate=0.0 if frozen else mask_rate)

    def linear_start(self) -> list[nn.Module]:
        """The modules of the fitted linear start (abundance head, category effects): fitted
        in closed form before fine-tuning (:mod:`aam.training.head_fit`), then kept fixed."""
        names = ("abundance_head", "category_effects")
        return [getattr(self, n) for n in names if getattr(self, n, None) is not None]

    def categorical_modules(self) -> list[nn.Module]:
        """Category embeddings, fusion and output scaling (trained at ``categorical_lr``)."""
        names = ("category_embeddings", "fusion", "output_scaling")
        return [getattr(self, n) for n in names if getattr(self, n, None) is not None]

    def forward(self, batch: Batch, mask_rate: float = 0.0) -> PredictorOutput:
        """Predict the target of every sample of ``batch``.

        Parameters
        ----------
        batch : Batch
            ``cat_ids`` [B, C] is required when categorical columns are configured.
        mask_rate : float
            Nucleotide masking for the optional masked-nucleotide loss (0 at evaluation).

        Returns
        -------
        PredictorOutput
            ``prediction`` [B, out_dim].
        """
        enc = self.encode(batch, mask_rate)
        asv_mask = enc.asv_mask  # [B, S]
        if self.cfg.data.categorical_columns and batch.cat_ids is None:
            raise InputError("the model was trained with categorical columns "
                             f"{', '.join(self.cfg.data.categorical_columns)} but the batch "
                             "has none; give the same metadata columns.")
        count_pred, fused = None, None
        if self.head is not None:  # [B, out_dim]; 0 before training
            prediction, count_pred, fused = self._attention_prediction(batch, enc)
        else:
            assert self.intercept is not None
            prediction = self.intercept(batch.size)
        prediction = prediction + self.abundance_head(self.start_inputs(batch, enc),
                                                      enc.count_features, asv_mask)
        if self.category_effects is not None:
            prediction = prediction + self.category_effects(batch.cat_ids)
        if self.output_scaling is not None:
            prediction = self.output_scaling(prediction, batch.cat_ids[:, self.scaling_column])
        if fused is None:
            return PredictorOutput(prediction, count_pred, enc)
        return PredictorOutput(prediction, count_pred, enc, fused.extras, fused.attention)

    def _attention_prediction(self, batch: Batch, enc: EncoderOutput):
        """The attention path's part of the prediction [B, out_dim], the count head's output
        and the fusion's output (None without categorical columns)."""
        asv_emb, asv_mask = enc.asv_emb, enc.asv_mask  # [B, S, D], [B, S]
        assert self.head is not None
        count_pred = self.count_head(asv_emb) if self.count_head is not None else None
        hidden = self.target_encoder(asv_emb, asv_mask)  # [B, S, D]
        fused = None
        if self.cfg.data.categorical_columns:
            cat_emb = self.category_embeddings(batch.cat_ids)  # [B, C, D]
            fused = self.fusion(hidden, asv_mask, cat_emb)
            pooled = fused.pooled
        else:
            pooled = self.pool(hidden, asv_mask)  # [B, D]
        return self.head(pooled, enc.sample_emb), count_pred, fused


class Intercept(nn.Module):
    """The constant of a model without a target head (``attention_path`` off): one value per
    output, set by the fitted start's intercept."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, batch_size: int) -> Tensor:
        """-> [batch_size, out_dim]."""
        return self.bias.expand(batch_size, -1)


def _abundance_head(cfg: FinetuneConfig) -> AbundanceHead:
    """The abundance head of ``cfg``: over ASV identity, or over the ASV vectors."""
    model = cfg.model
    n_features = len(COUNT_FEATURES)
    if cfg.abundance_head_features == "identity":
        return IdentityHead(cfg.out_dim, n_features, cfg.data.token_limit,
                            cfg.data.max_bp or model.max_bp)
    return AbundanceHead(model.embedding_dim, cfg.out_dim, n_features, cfg.data.token_limit,
                         cfg.abundance_head_width, seed=cfg.train.seed)


def start_mode(cfg: FinetuneConfig) -> str:
    """Which ASV vectors the abundance head reads (``abundance_head_encoder``): only a trained
    encoder needs still ones; with a frozen base it is ``live`` (the base does not move)."""
    if cfg.freeze_base:
        return "live"
    if cfg.abundance_head_features == "identity" and cfg.abundance_head_encoder == "snapshot":
        return "live"  # the identity head reads no ASV vectors: nothing to keep a copy of
    return cfg.abundance_head_encoder


def scaling_column_index(cfg: FinetuneConfig) -> Optional[int]:
    """Index of ``fusion.conditional_output_scaling`` in the categorical columns (None if unset).

    Raises
    ------
    InputError
        When the column is not one of ``data.categorical_columns``.
    """
    column = cfg.fusion.conditional_output_scaling
    if not column:
        return None
    columns = list(cfg.data.categorical_columns)
    if column not in columns:
        raise InputError(
            f"--conditional-output-scaling column '{column}' is not among --categorical-columns "
            f"({', '.join(columns) or 'none'}); add it to --categorical-columns."
        )
    return columns.index(column)


def load_encoder_state(predictor: Predictor, state: dict) -> None:
    """Copy an ``encoder`` checkpoint's weights into ``predictor.encoder``.

    ``state`` is the checkpoint's ``model_state``: either the encoder's own state dict or a
    pretraining model's (keys prefixed ``encoder.``).

    Raises
    ------
    InputError
        When the weights do not fit the encoder (different model sizes).
    """
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    try:
        predictor.encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InputError(f"the pretrained encoder's weights do not fit this model "
                         f"({state_dict_problem(err)}); use the model sizes of the pretraining "
                         "run.") from err


def state_dict_problem(err: RuntimeError) -> str:
    """The specific line of torch's load_state_dict error, shortened (a size mismatch as
    ``checkpoint [6, 15], model [6, 16]``, or the key list)."""
    return load_error_reason(err)


def predictor_from_checkpoint(checkpoint, source: str = "the checkpoint") -> Predictor:
    """Rebuild a trained :class:`Predictor` (strict load, eval mode) from a ``predictor``
    :class:`~aam.training.checkpoint.Checkpoint` (``load_checkpoint(path, "predictor")``).

    Raises
    ------
    InputError
        When the weights do not fit the model config stored with them.
    """
    from aam.config import FinetuneConfig, from_dict

    model = Predictor(from_dict(FinetuneConfig, checkpoint.config))
    try:
        model.load_state_dict(checkpoint.model_state, strict=True)
    except RuntimeError as err:
        raise InputError(f"{source}: the weights do not fit the model config stored with them "
                         f"({state_dict_problem(err)}). Re-run aam train.") from None
    return model.eval()
