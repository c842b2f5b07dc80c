"""Attribution tables: per-sample rows -> one row per ASV, ranks, and agreement with the forest.

Aggregates are means over the explained samples, counting an ASV absent from a sample as 0 (its
abundance equals the baseline there, so integrated gradients give it exactly 0).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from aam.data.taxonomy import feature_md5

FEATURE_ID = "feature-id"  # QIIME 2 accepts this header as a feature metadata ID column


def attribution_columns(classes: Optional[Sequence[str]]) -> list[str]:
    """Per-sample attribution columns: ``attribution`` or one ``attribution_<class>`` a class."""
    return [f"attribution_{c}" for c in classes] if classes else ["attribution"]


def aggregate(per_sample: pd.DataFrame, n_samples: int, classes: Optional[Sequence[str]],
              sequences: Sequence[str], taxa: Optional[pd.Series] = None) -> pd.DataFrame:
    """One row per ASV seen in ``per_sample``, ranked by mean |attribution| (rank 1 = largest).

    Parameters
    ----------
    per_sample : DataFrame
        Columns ``asv_index``, the :func:`attribution_columns`, ``encoder_pool_weight`` and
        optionally ``target_pool_weight``: one row per (sample, ASV) occurrence.
    n_samples : int
        Samples explained (the denominator of the means).
    classes : sequence of str or None
        Class names (classification) or None (regression).
    sequences : sequence of str
        The prepared ASV sequences (``asv_index`` -> sequence).
    taxa : Series, optional
        Taxon by sequence.

    Returns
    -------
    DataFrame
        ``feature-id`` (MD5 of the sequence, QIIME 2's hashed ID), ``sequence``, ``taxon``,
        ``rank``, ``mean_abs_attribution``, signed ``mean_attribution`` (regression) or
        ``mean_abs_attribution_<class>`` / ``mean_attribution_<class>`` (classification; the
        overall score is then the mean over classes), ``n_samples`` (samples holding the ASV)
        and the mean pooling weights where present.
    """
    columns = attribution_columns(classes)
    grouped = per_sample.groupby("asv_index", sort=True)
    frame = pd.DataFrame(index=grouped.size().index)
    frame["n_samples"] = grouped.size()
    abs_columns = []
    for column in columns:
        suffix = column[len("attribution"):]
        frame[f"mean_abs_attribution{suffix}"] = grouped[column].apply(
            lambda v: np.abs(v).sum()) / n_samples
        frame[f"mean_attribution{suffix}"] = grouped[column].sum() / n_samples
        abs_columns.append(f"mean_abs_attribution{suffix}")
    if classes:
        frame.insert(1, "mean_abs_attribution", frame[abs_columns].mean(axis=1))
    for pool in ("encoder_pool_weight", "target_pool_weight"):
        if pool in per_sample.columns and per_sample[pool].notna().any():
            frame[f"mean_{pool}"] = grouped[pool].mean()  # over the samples holding the ASV
    frame = frame.sort_values(["mean_abs_attribution", "n_samples"], ascending=False,
                              kind="stable")
    seqs = [sequences[i] for i in frame.index]
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    frame.insert(0, "taxon", [("" if taxa is None else taxa.get(s, "")) for s in seqs])
    frame.insert(0, "sequence", seqs)
    frame.insert(0, FEATURE_ID, [feature_md5(s) for s in seqs])
    frame.index.name = "asv_index"
    return frame.reset_index()


def signal_auroc(scores: pd.Series, signal: set[str]) -> float:
    """AUROC of ``scores`` (by sequence, every candidate ASV) at telling ``signal`` ASVs apart.

    Ties count one half (the Mann-Whitney form), so a constant score gives 0.5.
    """
    from sklearn.metrics import roc_auc_score

    labels = np.array([s in signal for s in scores.index])
    if labels.all() or not labels.any():
        raise ValueError("AUROC needs both signal and non-signal ASVs among the candidates")
    return float(roc_auc_score(labels, scores.to_numpy(dtype=float)))


def rank_agreement(aam: pd.Series, rf: pd.Series, union_top: int = 50,
                   overlap_top: int = 20) -> dict:
    """How far AAM's and the forest's ASV importances agree.

    Parameters
    ----------
    aam, rf : Series
        Importance by sequence (larger = more important); an ASV missing from one side counts 0.

    Returns
    -------
    dict
        ``spearman_top50_union``: Spearman correlation of the two scores over the union of both
        top-``union_top`` lists; ``overlap_top20``: shared ASVs among both top-``overlap_top``
        lists, as a fraction of ``overlap_top``; ``n_union``.
    """
    aam_top = list(aam.sort_values(ascending=False, kind="stable").index[:union_top])
    rf_top = list(rf.sort_values(ascending=False, kind="stable").index[:union_top])
    union = list(dict.fromkeys(aam_top + rf_top))
    a = aam.reindex(union).fillna(0.0).to_numpy(float)
    r = rf.reindex(union).fillna(0.0).to_numpy(float)
    rho = float(spearmanr(a, r).statistic) if len(union) > 2 and a.std() and r.std() else \
        float("nan")
    shared = set(aam_top[:overlap_top]) & set(rf_top[:overlap_top])
    return {f"spearman_top{union_top}_union": rho,
            f"overlap_top{overlap_top}": len(shared) / overlap_top, "n_union": len(union),
            f"shared_top{overlap_top}": len(shared)}


__all__ = ["FEATURE_ID", "aggregate", "attribution_columns", "rank_agreement", "signal_auroc"]
