"""``aam prepare``: table + sequences + metadata + tree/matrix -> the prepared data folder.

Everything is read and validated before the first output is written; each output is written
atomically and ``prepare.json`` (the summary) comes last.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from aam.atomic import atomic_path, write_json
from aam.provenance import inputs_fingerprints
from aam.config import TASKS
from aam.data.beta import BETA_METRICS, TREE_FREE, beta_distances, resolve_metric
from aam.data.biom_io import FeatureTable, read_table, write_table
from aam.data.fasta import read_fasta, resolve_sequences
from aam.data.filtering import DropLog, depth_mask, rarefy, sample_depths
from aam.data.metadata import check_columns, read_metadata, usable_target
from aam.data.taxonomy import (TAXONOMY_FILE, check_taxonomy_ids, read_taxonomy, taxa_by_sequence,
                               write_taxonomy)
from aam.data.distance_io import (DISTANCES_FILE, align_distance_matrix, read_distance_matrix,
                                  write_distances)
from aam.data.unifrac import match_tree_tips, read_tree
from aam.errors import InputError, first_items
from aam.settings import setting

log = logging.getLogger(__name__)
_BETA_HELP = ("pretraining distances: " + "; ".join(
    f"{m.name}: {m.summary}" + (" (needs --tree)" if m.needs_tree else "")
    for m in BETA_METRICS.values()) + " (default: unweighted-unifrac with --tree, none without)")


@dataclass(frozen=True)
class PrepareConfig:
    """Inputs and filters of ``aam prepare`` (paths as strings; optional ones None)."""

    table: str = setting(help="BIOM 2.1 table (HDF5/JSON) or .qza")
    metadata: str = setting(help="metadata TSV; first column sample ID")
    target_column: str = setting(help="target column", flag="--metadata-column")
    output_dir: str = setting(help="folder to write")
    task: str = setting("regression", "regression for a numeric target, classification for a "
                        "categorical one", choices=TASKS)
    rep_seqs: str | None = setting(None, "FASTA or FeatureData[Sequence] .qza mapping hash "
                                   "feature IDs to sequences")
    tree: str | None = setting(None, "rooted Newick tree (.nwk) or Phylogeny .qza")
    distance_matrix: str | None = setting(
        None, "precomputed distances: unifrac-binaries .h5 (order, matrix; ssu --format hdf5), "
        ".h5 (ids, matrix), QIIME 2 DistanceMatrix .qza, scikit-bio TSV or .npy (+ "
        "<stem>.ids.txt)")
    beta_metric: str | None = setting(None, _BETA_HELP, choices=tuple(BETA_METRICS))
    categorical_columns: tuple[str, ...] = setting(
        (), "comma-separated metadata columns used as categories")
    min_depth: int = setting(0, "drop samples with fewer reads (in usable ASVs); 0 drops only "
                             "empty samples", unit="reads")
    rarefy_depth: int | None = setting(None, "subsample every sample to this many reads "
                                       "(seeded); shallower samples are dropped", unit="reads")
    seed: int = setting(0, "rarefaction seed")
    max_ambiguous_fraction: float = setting(0.01, "drop features whose non-ACGT fraction "
                                            "exceeds this")
    allow_fractional_counts: bool = setting(
        False, "accept non-integer counts (e.g. relative abundances) with a warning; by default "
        "they are an error")
    taxonomy: str | None = setting(None, "taxonomy TSV or FeatureData[Taxonomy] .qza; stored as "
                                   "taxonomy.tsv (keyed by sequence) for rf-baseline, explain "
                                   "and the report")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}.")
        if self.tree and self.distance_matrix:
            raise InputError("Pass either --tree or --distance-matrix, not both.")
        if self.beta_metric and self.distance_matrix:
            raise InputError("Pass either --beta-metric or --distance-matrix (distances already "
                             "computed), not both.")
        resolve_metric(self.beta_metric, has_tree=bool(self.tree))  # fails before any reading
        if self.min_depth < 0:
            raise InputError(f"--min-depth must be >= 0, got {self.min_depth}.")
        if self.rarefy_depth is not None and self.rarefy_depth < 1:
            raise InputError(f"--rarefy-depth must be >= 1, got {self.rarefy_depth}.")
        if not 0.0 <= self.max_ambiguous_fraction <= 1.0:
            raise InputError("max_ambiguous_fraction must be between 0 and 1, got "
                             f"{self.max_ambiguous_fraction}.")


def prepare(cfg: PrepareConfig) -> dict:
    """Run the whole preparation and write ``cfg.output_dir/{table.biom, metadata.tsv,
    distances.h5, prepare.json}``.

    Returns
    -------
    dict
        The ``prepare.json`` summary (counts of kept and dropped samples/ASVs per reason).

    Raises
    ------
    FileNotFoundError
        An input path does not exist.
    InputError
        Inputs that disagree or a filter that leaves nothing; no output is written then.
    """
    table = read_table(cfg.table, cfg.allow_fractional_counts)
    metadata = read_metadata(cfg.metadata)
    check_columns(metadata, cfg.categorical_columns, cfg.metadata, what="categorical column")
    check_columns(metadata, [cfg.target_column], cfg.metadata, what="target column")
    rep_seqs = read_fasta(cfg.rep_seqs) if cfg.rep_seqs else None
    tree = read_tree(cfg.tree) if cfg.tree else None
    matrix = read_distance_matrix(cfg.distance_matrix) if cfg.distance_matrix else None
    taxonomy = read_taxonomy(cfg.taxonomy) if cfg.taxonomy else None
    drops = DropLog()
    columns, sequences, tips = _select_asvs(table, rep_seqs, tree, cfg, drops)
    table_ids = {seq: table.feature_ids[c] for c, seq in zip(columns, sequences)}
    if taxonomy is not None:  # before the distances: a foreign taxonomy fails fast
        check_taxonomy_ids(taxonomy, sequences, str(cfg.table), table.feature_ids)
    rows = _select_samples(table, metadata, columns, cfg, drops)
    counts, sequences, tips = _merge_duplicates(table.counts[rows][:, columns], sequences, tips,
                                                drops)
    reads_lost = _reads_lost(table.counts[rows], counts)
    sample_ids = [table.sample_ids[i] for i in rows]
    counts, sample_ids = _rarefy_samples(counts, sample_ids, cfg, drops)
    counts, sequences, tips = _drop_empty_asvs(counts, sequences, tips, drops)
    distances, seconds = _distances(counts, sample_ids, tips, tree, matrix, cfg)
    info = _summary(cfg, sample_ids, sequences, drops, reads_lost, seconds,
                    n_metadata_only=len(set(metadata.index) - set(table.sample_ids)))
    taxa = None if taxonomy is None else taxa_by_sequence(taxonomy, sequences, table_ids)
    if taxa is not None:
        info["taxonomy"] = {"n_assigned": int((taxa != "").sum()), "n_asvs": len(taxa)}
        log.info("taxonomy: %d of %d ASVs assigned", info["taxonomy"]["n_assigned"], len(taxa))
    _write_outputs(Path(cfg.output_dir), sample_ids, sequences, counts,
                   metadata.loc[sample_ids], distances, info, taxa)
    return info


def _select_asvs(table: FeatureTable, rep_seqs, tree, cfg: PrepareConfig, drops: DropLog):
    resolved = resolve_sequences(table.feature_ids, rep_seqs, cfg.max_ambiguous_fraction,
                                 source=str(cfg.rep_seqs))
    feature_reads = np.asarray(table.counts.sum(axis=0)).ravel()
    for reason, indices in resolved.dropped.items():
        drops.drop_asvs(reason, len(indices), feature_reads[indices].sum())
    keep = [i for i, seq in enumerate(resolved.sequences) if seq is not None]
    if not keep:
        raise InputError(f"No feature of {cfg.table} has a usable sequence (dropped: "
                         f"{', '.join(resolved.dropped)}). Check --rep-seqs and the table IDs.")
    tips: list = [None] * len(keep)
    if tree is not None:
        names = match_tree_tips(tree, [table.feature_ids[i] for i in keep],
                                [resolved.sequences[i] for i in keep], str(cfg.tree))
        absent = [i for i, name in zip(keep, names) if name is None]
        drops.drop_asvs("not in tree", len(absent), feature_reads[absent].sum())
        keep, tips = [i for i, n in zip(keep, names) if n], [n for n in names if n]
        if absent:
            log.warning("%s table features are not tips of the tree; dropped",
                        first_items([table.feature_ids[i] for i in absent]))
    return np.array(keep, dtype=np.int64), [resolved.sequences[i] for i in keep], tips


def _select_samples(table: FeatureTable, metadata, columns, cfg: PrepareConfig,
                    drops: DropLog) -> np.ndarray:
    in_meta = np.array([sid in metadata.index for sid in table.sample_ids])
    if not in_meta.any():
        raise InputError(
            f"No sample of {cfg.table} is in {cfg.metadata}: table IDs like "
            f"{', '.join(table.sample_ids[:3])}; metadata IDs like "
            f"{', '.join(metadata.index[:3])}. Use the metadata that belongs to the table."
        )
    no_meta = [sid for sid, ok in zip(table.sample_ids, in_meta) if not ok]
    if no_meta:
        log.warning("%s table samples have no metadata row; dropped", first_items(no_meta))
    drops.drop_samples("no metadata", no_meta)
    rows = np.flatnonzero(in_meta)
    ids = [table.sample_ids[i] for i in rows]
    present = usable_target(metadata.loc[ids], cfg.target_column, cfg.task, cfg.metadata)
    drops.drop_samples("missing target", [s for s, ok in zip(ids, present) if not ok])
    rows = rows[present.to_numpy()]
    sub = table.counts[rows][:, columns]
    deep = depth_mask(sub, cfg.min_depth)
    reason = "below min depth" if cfg.min_depth > 1 else "no reads"
    drops.drop_samples(reason, [table.sample_ids[i] for i in rows[~deep]])
    if not deep.any():
        raise InputError(f"All {len(rows)} samples with a target have fewer than "
                         f"{max(cfg.min_depth, 1)} reads: --min-depth emptied the table. "
                         "Lower --min-depth.")
    return rows[deep]


def _merge_duplicates(counts: sp.csr_matrix, sequences: list[str], tips: list, drops: DropLog):
    # Two feature IDs may carry the same sequence (e.g. case variants); the ASV index needs one.
    unique, first, inverse = np.unique(sequences, return_index=True, return_inverse=True)
    if len(unique) == len(sequences):
        return counts, sequences, tips
    order = np.sort(first)
    column_of = {old: new for new, old in enumerate(order)}
    target = np.array([column_of[first[k]] for k in inverse])
    merge = sp.csr_matrix((np.ones(len(sequences)), (np.arange(len(sequences)), target)),
                          shape=(len(sequences), len(order)))
    drops.drop_asvs("duplicate sequence (merged)", len(sequences) - len(order), 0)
    return (sp.csr_matrix(counts @ merge), [sequences[i] for i in order],
            [tips[i] for i in order])


def _rarefy_samples(counts, sample_ids, cfg: PrepareConfig, drops: DropLog):
    if cfg.rarefy_depth is None:
        return counts, sample_ids
    deep = sample_depths(counts) >= cfg.rarefy_depth
    drops.drop_samples("below rarefy depth", [s for s, ok in zip(sample_ids, deep) if not ok])
    if not deep.any():
        raise InputError(f"All {len(sample_ids)} samples have fewer than {cfg.rarefy_depth} "
                         "reads: --rarefy-depth emptied the table. Lower --rarefy-depth.")
    kept = [s for s, ok in zip(sample_ids, deep) if ok]
    return rarefy(counts[np.flatnonzero(deep)], cfg.rarefy_depth,
                  np.random.default_rng(cfg.seed)), kept


def _drop_empty_asvs(counts: sp.csr_matrix, sequences, tips, drops: DropLog):
    present = np.asarray((counts > 0).sum(axis=0)).ravel() > 0
    drops.drop_asvs("no reads in kept samples", int((~present).sum()), 0)
    keep = np.flatnonzero(present)
    return (sp.csr_matrix(counts[:, keep]), [sequences[i] for i in keep],
            [tips[i] for i in keep])


def _reads_lost(before: sp.csr_matrix, after: sp.csr_matrix) -> dict:
    lost = sample_depths(before) - sample_depths(after)
    return {"total": float(lost.sum()), "per_sample_min": float(lost.min()),
            "per_sample_median": float(np.median(lost)), "per_sample_max": float(lost.max())}


def _distances(counts, sample_ids, tips, tree, matrix, cfg: PrepareConfig):
    start = time.perf_counter()
    metric = resolve_metric(cfg.beta_metric, has_tree=tree is not None)
    if matrix is not None:
        distances = align_distance_matrix(*matrix, sample_ids, str(cfg.distance_matrix))
    elif metric is not None:
        log.info("computing %s distances for %d samples x %d ASVs", metric, *counts.shape)
        distances = beta_distances(metric, counts, tips, tree)
    else:
        log.warning("no --tree, --distance-matrix or --beta-metric: no pretraining distances "
                    "written (aam pretrain needs them); metrics that need no tree: %s",
                    ", ".join(TREE_FREE))
        return None, None
    seconds = time.perf_counter() - start
    log.info("%s distances ready in %.1f s", metric or "precomputed", seconds)
    return distances, seconds


def _summary(cfg: PrepareConfig, sample_ids, sequences, drops: DropLog, reads_lost, seconds,
             n_metadata_only: int) -> dict:
    dropped_samples, dropped_asvs = drops.summary()
    return {
        "target_column": cfg.target_column, "task": cfg.task,
        "categorical_columns": list(cfg.categorical_columns),
        "n_samples": len(sample_ids), "n_asvs": len(sequences),
        "max_bp": max(len(s) for s in sequences),
        "dropped_samples": dropped_samples, "dropped_asvs": dropped_asvs,
        "reads_lost": reads_lost, "metadata_samples_not_in_table": n_metadata_only,
        "distance_seconds": seconds,
        "beta_metric": _metric_name(cfg),
        "inputs": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "provenance": inputs_fingerprints({
            "table": cfg.table, "metadata": cfg.metadata, "rep_seqs": cfg.rep_seqs,
            "tree": cfg.tree, "distance_matrix": cfg.distance_matrix, "taxonomy": cfg.taxonomy}),
    }


def _metric_name(cfg: PrepareConfig) -> str | None:
    """The metric of ``distances.h5`` as recorded in prepare.json ("precomputed" for a matrix)."""
    if cfg.distance_matrix:
        return "precomputed"
    return resolve_metric(cfg.beta_metric, has_tree=cfg.tree is not None)


def _write_outputs(out: Path, sample_ids, sequences, counts, metadata, distances, info,
                   taxa=None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "prepare.json").unlink(missing_ok=True)  # absent until the folder is complete
    with atomic_path(out / "table.biom") as tmp:
        write_table(tmp, sample_ids, sequences, counts)
    with atomic_path(out / "metadata.tsv") as tmp:
        metadata.rename_axis("sample_id").to_csv(tmp, sep="\t")
    if distances is not None:
        with atomic_path(out / DISTANCES_FILE) as tmp:
            write_distances(tmp, sample_ids, distances)
    else:
        (out / DISTANCES_FILE).unlink(missing_ok=True)
    if taxa is not None:
        write_taxonomy(out / TAXONOMY_FILE, taxa)
    else:
        (out / TAXONOMY_FILE).unlink(missing_ok=True)
    write_json(out / "prepare.json", info)
    log.info("wrote %s: %d samples x %d ASVs", out, len(sample_ids), len(sequences))
