"""The explain figure: top ASVs by mean |attribution| labelled by taxon, and AAM vs forest ranks."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from aam.data.taxonomy import short_taxon
from aam.reports.plots import plt


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
    taxa = [short_taxon(t, 1) if t else "no taxonomy" for t in shown["taxon"]]
    palette = {t: f"C{i % 10}" for i, t in enumerate(dict.fromkeys(reversed(taxa)))}
    ax.barh(np.arange(len(shown)), shown["mean_abs_attribution"],
            color=[palette[t] for t in taxa])
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
    ax.set_title(f"union of both top-{top} ({len(union)} ASVs)")


__all__ = ["attribution_figure"]
