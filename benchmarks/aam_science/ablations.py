"""The ablation run of the real-data benchmark (``science.py --ablations``): at one seed, on the
benchmark's own grouped folds and inner splits (seed 0's), the full model and one row per part
taken away (or, for the corpus row, added), every row predicting the same test subjects once.

Each row is ``aam train`` settings plus which encoder it starts from: ``pretrained`` (the
benchmark's encoder of the fold, reused from its folder when it exists), ``random`` (no
pretraining: the encoder starts from its random initialisation; ``head-only-identity`` reads
no encoder output and takes that one) or ``corpus`` (pretrained on
the fold's training samples plus the unlabelled cf-sputum corpus, :mod:`aam_science.corpus`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

import aam
from aam.data.prepared import load_prepared

from aam_science.runner import (StudyResult, _scores, _tag, corpus_encoder,
                                finetune_and_predict, inner_split, outer_folds, study_encoder,
                                study_targets)
from aam_science.settings import Preset, Study

log = logging.getLogger("aam_science")


@dataclass(frozen=True)
class Ablation:
    """One row of the ablation table."""

    name: str
    encoder: str  # pretrained | random | corpus
    change: str  # what the row changes against the full model (the report's words)
    settings: dict = field(default_factory=dict)  # FinetuneConfig fields of the row


ABLATIONS = {a.name: a for a in (
    Ablation("full", "pretrained", "the full model (the benchmark's aam row at one seed)"),
    Ablation("head-only", "pretrained", "no attention / fusion path: the fitted start alone "
             "(sequence-kernel head + category main effects), no fine-tuning",
             {"attention_path": False}),
    Ablation("random-encoder", "random", "no pretraining: the encoder starts at random",),
    Ablation("asv-identity", "pretrained", "the fitted head reads ASV identity (one indicator "
             "per ASV), not sequence features", {"abundance_head_features": "identity"}),
    Ablation("head-only-identity", "random", "both of the above: a ridge over per-ASV "
             "presence and counts + category main effects, no sequence, no fine-tuning",
             {"attention_path": False, "abundance_head_features": "identity"}),
    Ablation("pretrained-corpus", "corpus", "pretraining on the training samples plus the "
             "cf-sputum corpus (Bray-Curtis over the joint table)"),
)}
BASE = "full"
# the rows of a plain --ablations run (head-only-identity on request: --ablation-rows)
DEFAULT_ROWS = ("full", "head-only", "random-encoder", "asv-identity", "pretrained-corpus")


@dataclass
class AblationResult:
    """Out-of-fold predictions of every row (``result.runs[row]`` [1, N] or [1, N, K]) and
    the seconds each row took (fine-tuning and prediction; pretraining counted apart)."""

    result: StudyResult
    seconds: dict[str, float]
    pretrain_seconds: float


def run_ablations(study: Study, data_dir: Path, work: Path, preset: Preset, encoders: dict,
                  rows: tuple[str, ...], corpus_table: Path | None) -> AblationResult:
    """Every ablation row of ``study`` on every outer fold at seed ``preset.seeds[0]``."""
    start = time.perf_counter()
    data = load_prepared(data_dir)
    folds, subjects = outer_folds(data, study, preset)
    ids = list(data.sample_ids)
    index = {s: i for i, s in enumerate(ids)}
    subject_of = dict(zip(ids, subjects))
    raw, classes, actual = study_targets(data, study)
    class_of = dict(zip(ids, raw)) if classes else None
    result = StudyResult(study, ids, subjects, actual, classes, np.full(len(ids), -1))
    shape = (1, len(ids)) + ((len(classes),) if classes else ())
    result.runs = {row: np.full(shape, np.nan) for row in rows}
    seconds = {row: 0.0 for row in rows}
    pretraining, seed, key = 0.0, preset.seeds[0], study.pretrain_key or study.name
    for k, (train, test) in enumerate(folds):
        test_idx = np.array([index[s] for s in test])
        result.fold_of[test_idx] = k
        inner_train, inner_val = inner_split(train, subject_of, k, preset, class_of, 0)
        for row in rows:
            ablation = ABLATIONS[row]
            began = time.perf_counter()
            encoder = None
            if ablation.encoder == "pretrained":
                encoder = study_encoder(data_dir, key, k, inner_train, inner_val, work, preset,
                                        encoders)
            elif ablation.encoder == "corpus":
                if corpus_table is None:
                    raise FileNotFoundError("the pretrained-corpus row needs --corpus TABLE")
                encoder = corpus_encoder(data_dir, key, k, inner_train, inner_val, work,
                                         preset, corpus_table, encoders)
            trained = time.perf_counter()
            pretraining += trained - began
            out = work / _tag(preset) / "ablations" / study.name / row / f"fold~{k}" / \
                f"seed~{seed}"
            stamp = _stamp(ablation, preset, seed, (inner_train, inner_val, test), encoder)
            scores = _cached(out, stamp)
            if scores is None:
                pred = finetune_and_predict(data_dir, data, out, study, inner_train, inner_val,
                                            test, seed, encoder, preset, ablation.settings)
                scores = _scores(pred, classes)
                np.save(out / "test_scores.npy", scores)
                (out / "inputs.sha").write_text(stamp)
            result.runs[row][0, test_idx] = scores
            seconds[row] += time.perf_counter() - trained
        log.info("%s fold %d done (%.0f s so far)", study.name, k, time.perf_counter() - start)
    result.seconds = time.perf_counter() - start
    return AblationResult(result, seconds, pretraining)


def _stamp(ablation: Ablation, preset: Preset, seed: int, lists, encoder: Path | None) -> str:
    """What a row's test predictions depend on: its settings, the preset, the sample lists,
    its encoder (that pretraining's own stamp) and the code of aam and of this benchmark."""
    sizes = {k: v for k, v in asdict(preset).items()
             if k not in ("note", "variants", "seeds", "studies", "rf_trees", "n_bootstrap")}
    pretrained = ""
    if encoder is not None and (encoder.parent / "inputs.sha").is_file():
        pretrained = (encoder.parent / "inputs.sha").read_text()
    return hashlib.sha256(repr((ablation, sizes, seed, lists, str(encoder), pretrained,
                                _code())).encode()).hexdigest()[:16]


@cache
def _code() -> str:
    """A digest of the aam package's and this benchmark's sources."""
    digest = hashlib.sha256()
    for root in (Path(aam.__file__).parent, Path(__file__).parent):
        for path in sorted(root.rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _cached(out: Path, stamp: str) -> np.ndarray | None:
    """A row's saved test scores when they were made from the same inputs (a run split in
    several invocations, e.g. the corpus row apart, pays for ``full`` once)."""
    saved, done = out / "test_scores.npy", out / "inputs.sha"
    if saved.is_file() and done.is_file() and done.read_text() == stamp:
        log.info("reusing %s (same inputs and code)", saved)
        return np.load(saved)
    return None

