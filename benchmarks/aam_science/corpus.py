"""A pretraining corpus beside a study: the study's training samples plus an unlabelled corpus
(``../shared/data/cf-sputum-corpus``: CF sputum, 16S V4), prepared as one table for
self-supervised pretraining.

The corpus's features are 150-nt V4 reads and the studies' 100-nt, both from the same forward
primer (most start ``TACG``; 241 of sleep-apnea's 1,298 ASVs equal the first 100 nt of a corpus
sequence, and 90% of the corpus's reads fall on a cut sequence that one of the two studies also
holds), so each corpus sequence is cut to the study's longest ASV (its first 100 nt) and the
counts of sequences identical after the cut are summed. The corpus has no tree, so the joint
table's distances are tree-free (Bray-Curtis), whatever the study's own pretraining uses. The
corpus has no labels: nothing of a target can leak through it.

The joint table is written as a BIOM table plus a metadata file and prepared with ``aam
prepare``'s library function, the same command a user runs (docs/science.md, "Ablations").
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from aam.atomic import atomic_path
from aam.data.biom_io import read_table, write_table
from aam.data.prepared import load_prepared
from aam.errors import InputError

log = logging.getLogger("aam_science")

CORPUS_PREFIX = "corpus."  # corpus sample IDs in the joint table (no clash with a study's)
CORPUS_MIN_DEPTH = 1000  # shallower corpus samples (44 of 636) give noisy distances: dropped
CORPUS_METRIC = "braycurtis"


def cut_sequences(sequences: list[str], counts: sp.csr_matrix, length: int
                  ) -> tuple[list[str], sp.csr_matrix]:
    """Cut every sequence to its first ``length`` nucleotides and sum the counts [N, F] of
    sequences that are identical after the cut; returns (sequences, counts), sorted."""
    cut = np.array([s[:length] for s in sequences])
    unique, column = np.unique(cut, return_inverse=True)
    merge = sp.csr_matrix((np.ones(len(cut)), (np.arange(len(cut)), column)),
                          shape=(len(cut), len(unique)))
    return unique.tolist(), sp.csr_matrix(counts @ merge)


def joint_table(study_dir: Path, sample_ids: list[str], corpus_table: Path
                ) -> tuple[list[str], list[str], sp.csr_matrix]:
    """(sample IDs, sequences, counts) of ``sample_ids`` of the prepared study plus every corpus
    sample (IDs prefixed :data:`CORPUS_PREFIX`), the corpus cut to the study's longest ASV."""
    study = load_prepared(study_dir).subset(sample_ids)
    length = max(len(s) for s in study.sequences)
    corpus = read_table(corpus_table)
    corpus_seqs, corpus_counts = cut_sequences(corpus.feature_ids, corpus.counts, length)
    sequences = sorted(set(study.sequences) | set(corpus_seqs))
    column = {s: i for i, s in enumerate(sequences)}

    def widen(counts: sp.csr_matrix, seqs: list[str]) -> sp.csr_matrix:
        place = sp.csr_matrix((np.ones(len(seqs)), (np.arange(len(seqs)),
                                                    [column[s] for s in seqs])),
                              shape=(len(seqs), len(sequences)))
        return sp.csr_matrix(counts @ place)

    counts = sp.vstack([widen(study.counts, study.sequences),
                        widen(corpus_counts, corpus_seqs)]).tocsr()
    ids = list(study.sample_ids) + [CORPUS_PREFIX + s for s in corpus.sample_ids]
    log.info("joint table: %d study + %d corpus samples, %d sequences (corpus cut to %d nt: "
             "%d of its %d sequences stay distinct; %d shared with the study)",
             len(study.sample_ids), len(corpus.sample_ids), len(sequences), length,
             len(corpus_seqs), len(corpus.feature_ids),
             len(set(study.sequences) & set(corpus_seqs)))
    return ids, sequences, counts


def prepare_joint(study_dir: Path, sample_ids: list[str], corpus_table: Path, out: Path
                  ) -> tuple[Path, list[str]]:
    """Prepare the joint table of ``sample_ids`` (a fold's training samples) and the corpus in
    ``out`` (reused when it exists for the same inputs); returns (prepared folder, the corpus
    sample IDs kept)."""
    from aam.data.prepare import PrepareConfig, prepare

    key = hashlib.sha256(repr((sorted(sample_ids), str(corpus_table), CORPUS_MIN_DEPTH,
                               CORPUS_METRIC)).encode()).hexdigest()[:16]
    prepared, stamp = out / "prepared", out / "inputs.sha"
    if not ((prepared / "prepare.json").is_file() and stamp.is_file()
            and stamp.read_text() == key):
        ids, sequences, counts = joint_table(study_dir, sample_ids, corpus_table)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "joint.biom") as tmp:
            write_table(tmp, ids, sequences, counts, generated_by="benchmarks/science.py")
        in_study = [0 if s.startswith(CORPUS_PREFIX) else 1 for s in ids]
        pd.DataFrame({"sample_id": ids, "in_study": in_study}).to_csv(
            out / "joint-metadata.tsv", sep="\t", index=False)
        # min_depth drops shallow corpus samples only: the studies' samples all hold more
        prepare(PrepareConfig(table=str(out / "joint.biom"),
                              metadata=str(out / "joint-metadata.tsv"), target_column="in_study",
                              output_dir=str(prepared), beta_metric=CORPUS_METRIC,
                              min_depth=CORPUS_MIN_DEPTH))
        stamp.write_text(key)
    kept = load_prepared(prepared).sample_ids
    missing = sorted(set(sample_ids) - set(kept))
    if missing:
        raise InputError(f"{len(missing)} study samples fell below {CORPUS_MIN_DEPTH} reads in "
                         f"the joint table (first: {missing[:5]}); lower CORPUS_MIN_DEPTH in "
                         "benchmarks/aam_science/corpus.py.")
    return prepared, [s for s in kept if s.startswith(CORPUS_PREFIX)]
