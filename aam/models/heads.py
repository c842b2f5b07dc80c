"""Fine-tuning building blocks: masked attention pooling, category embeddings, count head,
target encoder and head, the abundance head and the category main effects (the fitted linear
start), and per-category output scaling."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from aam.models.attention import AttentionPooling, TransformerStack
from aam.models.encoder import centred_log_ratio


class MaskedAttentionPool(AttentionPooling):
    """:class:`AttentionPooling` without the output norm, returning only the pooled vectors."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, normalize=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Pool ``x`` [B, S, D] over real positions ``mask`` [B, S] (True = real) -> [B, D]."""
        return super().forward(x, mask)[0]


class CategoryEmbeddings(nn.Module):
    """One embedding table per categorical column, projected to the model width.

    Index 0 of every column is the reserved "unseen or missing" category.

    Parameters
    ----------
    cardinalities : tuple of int
        Categories per column, including the reserved index 0.
    dim : int
        Model width ``D`` of the returned vectors.
    category_dim : int
        Width of each table; 0 means ``dim`` (no projection).
    """

    def __init__(self, cardinalities: tuple[int, ...], dim: int, category_dim: int = 0) -> None:
        super().__init__()
        width = category_dim or dim
        self.tables = nn.ModuleList(nn.Embedding(int(n), width) for n in cardinalities)
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.02)
        self.project = nn.Linear(width, dim) if width != dim else nn.Identity()

    def forward(self, cat_ids: Tensor) -> Tensor:
        """``cat_ids`` LongTensor [B, C] -> category vectors [B, C, D]."""
        columns = [table(cat_ids[:, i]) for i, table in enumerate(self.tables)]  # C x [B, W]
        return self.project(torch.stack(columns, dim=1))


class CountHead(nn.Module):
    """Predicts each ASV's centred log-ratio abundance from its vector."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, asv_emb: Tensor) -> Tensor:
        """``asv_emb`` [B, S, D] -> predicted centred log-ratio abundance [B, S]."""
        return self.linear(asv_emb).squeeze(-1)


def count_loss(pred_clr: Tensor, counts: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error between predicted and true centred log-ratio abundance at real ASVs.

    The target is the CLR transform (Aitchison 1982) over the sample's real ASVs: log relative
    abundance minus its mean, the usual scale for compositional microbiome data. Uncentred log
    abundances (about -5) made the initial count loss ~27 against a target loss of ~1, and the
    count gradient then dominated what the shared encoder learned.

    Parameters
    ----------
    pred_clr : FloatTensor [B, S]
    counts : FloatTensor [B, S]
        Raw counts, 0 at padding.
    mask : BoolTensor [B, S]
        True at real ASVs.
    """
    err = (pred_clr.float() - centred_log_ratio(counts, mask)) ** 2
    return err[mask].mean() if mask.any() else err.sum() * 0.0


# The abundance head's hidden layer is cos(W v + b), W ~ N(0, (RFF_SCALE^2 / D) I) and
# b ~ U(0, 2 pi): random Fourier features of the (batch-normed, unit-variance) ASV vectors, so
# the fitted head (aam.training.head_fit) is kernel ridge regression with a Gaussian kernel over
# ASV vectors: ASVs with nearby vectors get similar coefficients, and the scale sets how near.
# On the development subjects of sleep-apnea age (fit only, 512 features): scale 1 R2 0.561,
# 3 0.686, 10 0.693, 30 0.611; GELU features (PyTorch's initialisation x 3) 0.589.
RFF_SCALE = 10.0
# The abundance head draws its hidden layer from its own generator, seeded from the run seed and
# this stream number: the same seed gives the same features (and so the same fitted start)
# whatever fusion, categorical columns or other modules are built around it.
HEAD_STREAM = 0xAB0


def head_generator(seed: int) -> torch.Generator:
    """The abundance head's own random stream for run seed ``seed`` (independent of the global
    torch stream, from which the rest of the model is drawn)."""
    state = np.random.SeedSequence([int(seed) % 2 ** 32, HEAD_STREAM]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class CosineFeatures(nn.Module):
    """``cos(x)``: with a random linear layer before it, random Fourier features."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cos(x)


class AbundanceHead(nn.Module):
    """An additive per-ASV term of the prediction, linear in each ASV's abundance features.

    ``sum_i (a(v_i) + sum_f c_if * b_f(v_i)) / budget`` over the ASVs ``i`` of a sample, where
    ``v_i`` is the ASV's vector (from its sequence only), ``c_if`` its abundance features (the
    ones the sample encoder reads, ``EncoderOutput.count_features``) and ``a``, ``b_f`` come from
    one network of ``v_i``: a hidden layer of ``width`` random Fourier features (scale
    :data:`RFF_SCALE`) and a linear layer. It is a linear model over presence and abundance
    whose coefficients are functions of each ASV's sequence; attention pooling averages and
    cannot sum. ``budget`` (the token limit) keeps the output's scale independent of how many
    ASVs the samples hold. Zero-initialised output; ``aam train`` then fits the last layer in
    closed form (:mod:`aam.training.head_fit`). ``seed``: the hidden layer comes from
    :func:`head_generator` of it, not from the global torch stream.
    """

    def __init__(self, dim: int, out_dim: int, n_features: int, budget: int, width: int,
                 seed: int = 0) -> None:
        super().__init__()
        self.out_dim, self.n_features = out_dim, n_features
        self.net = nn.Sequential(nn.Linear(dim, width), CosineFeatures(),
                                 nn.Linear(width, (1 + n_features) * out_dim))
        self.budget = float(budget)
        generator = head_generator(seed)
        first = self.net[0]
        with torch.no_grad():
            first.weight.normal_(0.0, RFF_SCALE / math.sqrt(dim), generator=generator)
            first.bias.uniform_(0.0, 2.0 * math.pi, generator=generator)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def coefficients(self, asv_vectors: Tensor) -> tuple[Tensor, Tensor]:
        """``asv_vectors`` [..., D] -> (presence term [..., out_dim], slopes [..., F, out_dim])."""
        out = self.net(asv_vectors).unflatten(-1, (1 + self.n_features, self.out_dim))
        return out[..., 0, :], out[..., 1:, :]

    def forward(self, asv_vectors: Tensor, count_features: Tensor, mask: Tensor) -> Tensor:
        """``asv_vectors`` [B, S, D], ``count_features`` [B, S, F], ``mask`` [B, S]
        -> [B, out_dim]."""
        presence, slopes = self.coefficients(asv_vectors)  # [B, S, K], [B, S, F, K]
        terms = presence + (count_features.to(slopes.dtype).unsqueeze(-1) * slopes).sum(-2)
        return (terms * mask.unsqueeze(-1).to(terms.dtype)).sum(1) / self.budget

    def design(self, asv_vectors: Tensor, count_features: Tensor, mask: Tensor) -> Tensor:
        """The head's output is linear in its last layer: ``forward(...) == design(...) @ W``
        with ``W`` from :meth:`output_matrix`. Returns [B, (1 + F) * (H + 1)]: per term ``j``
        (presence, then each count feature) the sum over ASVs of ``w_j * [hidden, 1]`` / budget,
        where ``w_0 = 1``, ``w_f = c_f`` and ``hidden`` is the MLP's last hidden layer [H]."""
        hidden = self.net[:-1](asv_vectors)  # [B, S, H]
        hidden = torch.cat([hidden, torch.ones_like(hidden[..., :1])], dim=-1)  # [B, S, H + 1]
        ones = torch.ones_like(count_features[..., :1])
        weights = torch.cat([ones, count_features], dim=-1).to(hidden.dtype)  # [B, S, 1 + F]
        weights = weights * mask.unsqueeze(-1).to(hidden.dtype)
        return torch.einsum("bsj,bsh->bjh", weights, hidden).flatten(1) / self.budget

    def output_matrix(self) -> Tensor:
        """The last layer as the [(1 + F) * (H + 1), out_dim] matrix that :meth:`design` meets."""
        last = self.net[-1]
        weight = last.weight.T.unflatten(-1, (1 + self.n_features, self.out_dim))  # [H, 1+F, K]
        bias = last.bias.unflatten(-1, (1 + self.n_features, self.out_dim))  # [1+F, K]
        return torch.cat([weight.transpose(0, 1), bias.unsqueeze(1)], dim=1).flatten(0, 1)

    @torch.no_grad()
    def set_output_matrix(self, matrix: Tensor) -> None:
        """Load the last layer from a [(1 + F) * (H + 1), out_dim] matrix (inverse of
        :meth:`output_matrix`)."""
        last = self.net[-1]
        blocks = matrix.to(last.weight).unflatten(0, (1 + self.n_features, -1))  # [1+F, H+1, K]
        last.weight.copy_(blocks[:, :-1, :].permute(0, 2, 1).flatten(0, 1))
        last.bias.copy_(blocks[:, -1, :].flatten())


class TargetEncoder(nn.Module):
    """Transformer layers across the ASVs of a sample (padding masked) for the target path.

    The same pre-norm blocks as the encoder (:class:`aam.models.attention.TransformerStack`).
    """

    def __init__(self, dim: int, heads: int, layers: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.stack = TransformerStack(dim, heads, layers, ff_mult, dropout) if layers else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` [B, S, D], ``mask`` [B, S] (True = real) -> [B, S, D]; padding rows zeroed."""
        if self.stack is None:
            return x * mask.unsqueeze(-1).to(x.dtype)
        return self.stack(x, mask)


class TargetHead(nn.Module):
    """Maps the fused sample vector and the encoder's sample embedding to the prediction.

    The encoder's ``sample_emb`` (the representation distance pretraining trained) is read
    alongside the fused vector so pretraining can help the target. The last layer starts at
    zero (weight and bias), so an untrained transformer path adds exactly nothing: the first
    prediction is the fitted linear start (abundance head + category effects), and the path
    learns the residual. The last layer gets gradients from the first step (its input is not
    zero); the layers before it from the second.
    """

    def __init__(self, dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(dim, out_dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, fused: Tensor, sample_emb: Tensor) -> Tensor:
        """``fused`` [B, D], ``sample_emb`` [B, D] -> prediction [B, out_dim]."""
        return self.net(torch.cat([fused, sample_emb], dim=-1))


class CategoryEffects(nn.Module):
    """Main effects of the categorical columns: ``sum_j table_j[c_j]`` [B, out_dim], one value
    per category and output, added to the prediction beside the abundance head.

    Zero-initialised; ``aam train`` fits the tables in the same penalised linear fit as the
    abundance head's last layer (:mod:`aam.training.head_fit`, over the one-hot columns of
    :meth:`design`), so the fitted start uses the metadata. Row 0 of every table (the reserved
    "unseen or missing" category) is no column of the fit and stays 0 (``padding_idx``: no
    gradient either): an unseen category gets no effect, which with every level seen in the
    fit is the unweighted mean of the level effects (ridge splits a full one-hot block that
    way).

    Parameters
    ----------
    cardinalities : tuple of int
        Categories per column, including the reserved index 0.
    out_dim : int
    """

    def __init__(self, cardinalities: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        self.cardinalities = tuple(int(n) for n in cardinalities)
        self.tables = nn.ModuleList(nn.Embedding(n, out_dim, padding_idx=0)
                                    for n in self.cardinalities)
        for table in self.tables:
            nn.init.zeros_(table.weight)

    def forward(self, cat_ids: Tensor) -> Tensor:
        """``cat_ids`` LongTensor [B, C] -> summed effects [B, out_dim]."""
        return sum(table(cat_ids[:, i]) for i, table in enumerate(self.tables))

    def design(self, cat_ids: Tensor) -> Tensor:
        """One-hot columns of categories 1..K-1 of every column: [B, sum_j (K_j - 1)], so that
        ``forward(cat_ids) == design(cat_ids) @ output_matrix()``."""
        blocks = [nn.functional.one_hot(cat_ids[:, i].long(), n)[:, 1:]
                  for i, n in enumerate(self.cardinalities)]
        return torch.cat(blocks, dim=1).float()

    def output_matrix(self) -> Tensor:
        """The tables without their row 0, stacked: [sum_j (K_j - 1), out_dim]."""
        return torch.cat([table.weight[1:] for table in self.tables], dim=0)

    @torch.no_grad()
    def set_output_matrix(self, matrix: Tensor) -> None:
        """Load the tables from a :meth:`output_matrix`-shaped matrix (row 0 stays 0)."""
        start = 0
        for table, n in zip(self.tables, self.cardinalities):
            table.weight[1:].copy_(matrix[start:start + n - 1].to(table.weight))
            table.weight[0].zero_()
            start += n - 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # a predictor saved before these effects existed has none of their keys: it was the
        # model with zero effects, and loads as that
        if not any(key.startswith(prefix) for key in state_dict):
            for name, value in self.state_dict().items():
                state_dict[prefix + name] = torch.zeros_like(value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class OutputScaling(nn.Module):
    """Per-category scale and shift of the prediction: ``y * scale[c] + shift[c]``.

    Initialised to the identity (scale 1, shift 0), so training starts from the plain prediction.
    """

    def __init__(self, cardinality: int, out_dim: int) -> None:
        super().__init__()
        self.scale = nn.Embedding(int(cardinality), out_dim)
        self.shift = nn.Embedding(int(cardinality), out_dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, pred: Tensor, cat_ids: Tensor) -> Tensor:
        """``pred`` [B, out_dim], ``cat_ids`` LongTensor [B] -> scaled prediction [B, out_dim]."""
        return pred * self.scale(cat_ids) + self.shift(cat_ids)
