"""The explain figure: top ASVs by mean |attribution| labelled by taxon, and AAM vs forest ranks."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from aam.data.taxonomy import short_taxon
from aam.reports.plots import plt


def _family(taxon: str) -> str:
    """The family (``f__...``) of a taxonomy string, else its last named rank."""
    parts = [p.strip() for p in str(taxon or "").split(";")]
    family = [p for p in parts if p.startswith("f__") and p != "f__"]
    return family[0][3:] if family else (short_taxon(taxon, 1) if taxon else "no taxonomy")


def _label(row) -> str:
    taxon = short_taxon(row["taxon"]) if row["taxon"] else "no taxonomy"
    return f"{taxon} ({row['feature-id'][:7]})"


def attribution_figure(table: pd.DataFrame, rf: Optional[pd.Series] = None, top: int = 20,
                       title: str = ""):
    """Bar chart of the ``top`` ASVs (colour = taxon) and, with ``rf`` (importance by sequence),
    a scatter of AAM rank vs forest rank over the union of both top-50 lists."""
    shown = table.head(top).iloc[::-1]
    panels = 2 if rf is not None and len(rf) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels + 1.5, 0.28 * len(shown) + 1.6),
                             squeeze=False, layout="constrained")
    ax = axes[0, 0]
    groups = [_family(t) for t in shown["taxon"]]
    order = list(dict.fromkeys(reversed(groups)))
    palette = {g: (f"C{i}" if i < 9 else "0.6") for i, g in enumerate(order)}
    ax.barh(np.arange(len(shown)), shown["mean_abs_attribution"],
            color=[palette[g] for g in groups])
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[g]) for g in order[:9]]
    ax.legend(handles, order[:9], fontsize=6, loc="lower right", title="family", title_fontsize=6)
    ax.set_yticks(np.arange(len(shown)), [_label(r) for _, r in shown.iterrows()], fontsize=7)
    ax.set_xlabel("mean |integrated gradient| over samples")
    ax.set_title(title or f"top {len(shown)} ASVs (AAM)")
    if panels == 2:
        _rank_scatter(axes[0, 1], table, rf)
    return fig


def _rank_scatter(ax, table: pd.DataFrame, rf: pd.Series, top: int = 50) -> None:
    aam = table.set_index("sequence")["mean_abs_attribution"]
    union = list(dict.fromkeys(list(aam.index[:top])
                               + list(rf.sort_values(ascending=False).index[:top])))
    aam_rank = aam.rank(ascending=False, method="min").reindex(union)
    rf_rank = rf.rank(ascending=False, method="min").reindex(union)
    worst = max(len(aam), len(rf)) + 1
    ax.scatter(aam_rank.fillna(worst), rf_rank.fillna(worst), s=12, alpha=0.7, color="C0")
    ax.plot([1, top], [1, top], color="0.6", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("AAM rank (mean |attribution|)")
    ax.set_ylabel("random-forest rank (impurity importance)")
    ax.set_title(f"union of both top-{top} ({len(union)} ASVs; unranked at the edge)")


__all__ = ["attribution_figure"]
