"""The abundance head over ASV identity: one indicator per ASV, no sequence information.

The ablation of the sequence kernel (``abundance_head_features: identity``). The sequence head
(:class:`aam.models.heads.AbundanceHead`) gives each ASV coefficients that are functions of its
sequence (random Fourier features of its vector), so ASVs with similar sequences share
strength. This head gives each ASV of a fixed vocabulary (the ASVs the model is fed in the
run's training and validation samples when the start is fitted) coefficients of its own: the
fitted start is then a ridge over per-ASV presence and count features, a linear model of the
same additive form with no sequence information. An ASV outside the
vocabulary (unseen in training) has no column of its own; like every ASV it still gets the
shared term (the constant column of :meth:`design`), and nothing else.

ASVs are matched by their nucleotide tokens, so a model predicts on any prepared table.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aam.data.batch import Batch
from aam.models.heads import AbundanceHead


class IdentityHead(AbundanceHead):
    """An :class:`~aam.models.heads.AbundanceHead` whose hidden layer is the one-hot of each
    ASV's vocabulary column: ``sum_i (a_i + sum_f c_if * b_if) / budget`` with ``a_i``, ``b_if``
    free per ASV ``i`` (the last layer's weight column), plus the shared bias term.

    The vocabulary is a buffer (``vocab_tokens`` [V, L]) set by :meth:`set_vocabulary` before
    the fit; a saved model's vocabulary size comes from its state dict when it is loaded.

    Parameters
    ----------
    out_dim : int
    n_features : int
        Count features per ASV (``F``).
    budget : int
        The token limit (as in the sequence head).
    max_bp : int
        Token length of the vocabulary rows.
    """

    def __init__(self, out_dim: int, n_features: int, budget: int, max_bp: int) -> None:
        nn.Module.__init__(self)  # no random hidden layer: AbundanceHead's is not built
        self.out_dim, self.n_features = out_dim, n_features
        self.budget = float(budget)
        self.register_buffer("vocab_tokens", torch.zeros(0, max_bp, dtype=torch.uint8))
        self.net = nn.Sequential(self._last_layer(0))
        self._known = torch.full((0,), -2, dtype=torch.long)  # global ASV index -> column

    def _last_layer(self, size: int) -> nn.Linear:
        """Linear(V, (1 + F) * out_dim) at zero (no random init: it may have no inputs yet)."""
        outputs = (1 + self.n_features) * self.out_dim
        last = nn.Linear(1, outputs)
        last.weight = nn.Parameter(torch.zeros(outputs, size))
        last.in_features = size
        nn.init.zeros_(last.bias)
        return last

    @property
    def size(self) -> int:
        """Vocabulary size ``V``."""
        return int(self.vocab_tokens.shape[0])

    def set_vocabulary(self, tokens: Tensor) -> None:
        """Use ``tokens`` [V, L] (distinct rows, e.g. from
        :func:`aam.training.head_fit.fed_asv_tokens`) as the vocabulary; the last layer starts
        again at zero."""
        device = self.vocab_tokens.device
        self.vocab_tokens = tokens.to(device=device, dtype=torch.uint8)
        self.net[0] = self._last_layer(self.size).to(device)
        self._known = torch.full((0,), -2, dtype=torch.long)

    def columns(self, batch: Batch) -> Tensor:
        """Vocabulary column of every ASV occurrence [B, S] (long; -1 at ASVs outside the
        vocabulary and at padding). Looked up once per global ASV index and kept (a plain
        attribute, emptied when the vocabulary changes), as the ASV vector caches do: within
        one run every batch indexes the same prepared table."""
        keys = batch.unique_asv_index.cpu()
        if keys.numel() and int(keys.max()) >= len(self._known):
            grown = torch.full((int(keys.max()) + 1,), -2, dtype=torch.long)
            grown[: len(self._known)] = self._known
            self._known = grown
        new = self._known[keys] == -2
        if new.any():
            rows = new.to(batch.unique_tokens.device)
            self._known[keys[new]] = self._lookup(batch.unique_tokens[rows]).cpu()
        per_asv = self._known[keys].to(batch.asv_mask.device)  # [U]
        return torch.where(batch.asv_mask, per_asv[batch.asv_inverse], -1)

    def _lookup(self, tokens: Tensor) -> Tensor:
        """Vocabulary column of each row of ``tokens`` [U, L] (-1 outside it) -> [U]."""
        width = self.vocab_tokens.shape[1]
        if tokens.shape[1] != width:  # pad or cut to the vocabulary's length
            tokens = nn.functional.pad(tokens, (0, max(0, width - tokens.shape[1])))[:, :width]
        both = torch.cat([_packed(self.vocab_tokens), _packed(tokens)])  # exact, 21 bases a word
        _, group = torch.unique(both, dim=0, return_inverse=True)
        column_of = torch.full((int(group.max()) + 1 if len(group) else 0,), -1,
                               dtype=torch.long, device=tokens.device)
        column_of[group[: self.size]] = torch.arange(self.size, device=tokens.device)
        return column_of[group[self.size:]]

    def coefficients(self, columns: Tensor) -> tuple[Tensor, Tensor]:
        """``columns`` [...] -> (presence term [..., out_dim], slopes [..., F, out_dim])."""
        last = self.net[-1]
        seen = (columns >= 0).unsqueeze(-1)
        own = nn.functional.embedding(columns.clamp_min(0), last.weight.T) * seen
        out = (own + last.bias).unflatten(-1, (1 + self.n_features, self.out_dim))
        return out[..., 0, :], out[..., 1:, :]

    def design(self, columns: Tensor, count_features: Tensor, mask: Tensor) -> Tensor:
        """As :meth:`AbundanceHead.design` with the one-hot vocabulary as the hidden layer:
        [B, (1 + F) * (V + 1)], per term the per-column sums then the shared column."""
        ones = torch.ones_like(count_features[..., :1])
        weights = torch.cat([ones, count_features], dim=-1).double()  # [B, S, 1 + F]
        weights = weights * mask.unsqueeze(-1).to(weights.dtype)
        n, _, terms = weights.shape
        index = torch.where(columns >= 0, columns, self.size + 1)  # unseen: a dropped column
        out = torch.zeros(n, terms, self.size + 2, dtype=weights.dtype, device=weights.device)
        out.scatter_add_(2, index.unsqueeze(1).expand(-1, terms, -1), weights.transpose(1, 2))
        out[:, :, self.size] = weights.sum(1)  # the shared (bias) column
        return out[:, :, : self.size + 1].flatten(1) / self.budget

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        saved = state_dict.get(prefix + "vocab_tokens")
        if saved is not None and tuple(saved.shape) != tuple(self.vocab_tokens.shape):
            self.set_vocabulary(torch.zeros_like(saved, dtype=torch.uint8))  # sizes only
        self._known = torch.full((0,), -2, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _packed(tokens: Tensor) -> Tensor:
    """Tokens [N, L] (values below 8) -> [N, ceil(L / 21)] int64 words holding 21 tokens of 3
    bits each: equal rows stay equal, different rows differ."""
    tokens = tokens.long()
    n, length = tokens.shape
    tokens = nn.functional.pad(tokens, (0, -length % 21))
    shifts = 3 * torch.arange(21, device=tokens.device)
    return (tokens.view(n, -1, 21) << shifts).sum(-1)

