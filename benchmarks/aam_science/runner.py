"""The benchmark's runs: prepare each study, make grouped folds, pretrain and fine-tune AAM on
each fold's training subjects (choosing epochs on an inner grouped split of them), fit the
random forest on the same training samples, and predict each fold's test subjects once.

Selection never sees a test subject: the fold's training subjects are split again by subject
into inner-train and inner-validation; pretraining (self-supervised) and fine-tuning train on
inner-train and pick their best epoch (and stop early) on inner-validation. The forest and the
hybrid row need no validation and fit on all of the fold's training samples.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aam.atomic import write_lines
from aam.baselines.rf import RFConfig
from aam.config import DataConfig, FinetuneConfig, ModelConfig, PretrainConfig, TrainConfig
from aam.data.prepared import PreparedData, load_prepared
from aam.data.splits import SplitConfig, split_samples

from aam_science.settings import Preset, Study

log = logging.getLogger("aam_science")


@dataclass
class StudyResult:
    """Out-of-fold predictions of every variant of one study, aligned to ``sample_ids``."""

    study: Study
    sample_ids: list[str]
    subjects: np.ndarray  # [N]
    actual: np.ndarray  # [N] values or class indices
    classes: list[str] | None
    fold_of: np.ndarray  # [N] test fold of each sample
    runs: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> [R, N] or [R, N, K]
    seconds: float = 0.0


def prepare_study(study: Study, data_root: Path, cache: Path, prepared_root: Path | None
                  ) -> Path:
    """The prepared folder of ``study``: ``prepared_root/<name>`` when given, else prepared
    once into ``cache/<name>`` with ``aam prepare``'s library function."""
    if prepared_root is not None:
        path = prepared_root / study.name
        if not (path / "prepare.json").is_file():
            raise FileNotFoundError(f"{path}/prepare.json not found: prepare the studies with "
                                    "`python benchmarks/science.py --prepare-only --work-dir "
                                    "DIR` and pass --prepared-root DIR/prepared")
        return path
    out = cache / study.name
    if (out / "prepare.json").is_file():
        return out
    from aam.data.prepare import PrepareConfig, prepare

    src = data_root / study.folder
    if not src.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {src}")
    prepare(PrepareConfig(table=str(src / "table.biom"), metadata=str(src / study.metadata),
                          target_column=study.target, task=study.task, output_dir=str(out),
                          tree=str(src / study.tree) if study.tree else None,
                          beta_metric=study.beta_metric, min_depth=study.min_depth))
    return out


def outer_folds(data: PreparedData, study: Study, preset: Preset):
    """Grouped K-fold by subject (split seed 0): list of (train ids, test ids)."""
    subjects = data.metadata.loc[data.sample_ids, study.group_by].astype(str).to_numpy()
    folds = split_samples(data.sample_ids, SplitConfig(folds=preset.folds, seed=0), subjects)
    return [(f.train, f.test) for f in folds], subjects


def inner_split(train_ids: list[str], subject_of: dict, fold: int, preset: Preset,
                class_of: dict | None = None, member: int = 0):
    """Grouped split of a fold's training subjects: (inner-train, inner-validation);
    stratified by ``class_of`` (a subject-level class) so validation holds every class.

    With ``preset.inner_rotation`` the training subjects are cut into ``1 / inner_val_fraction``
    grouped folds (fewer when the rarest class has fewer subjects) and ensemble member
    ``member`` validates on fold ``member`` (so the members of an ensemble validate on different
    subjects and, together, train on every one); otherwise every member uses the same holdout.
    """
    strata = [class_of[s] for s in train_ids] if class_of is not None else None
    groups = [subject_of[s] for s in train_ids]
    if preset.inner_rotation:
        n = round(1 / preset.inner_val_fraction)
        if strata is not None:  # every class in every inner fold: at most its subject count
            n = min(n, *Counter(cls for _, cls in set(zip(groups, strata))).values())
        if n >= 2:
            inner = split_samples(train_ids, SplitConfig(folds=n, seed=fold), groups, strata)
            return inner[member % n].train, inner[member % n].val
    cfg = SplitConfig(val_fraction=preset.inner_val_fraction, seed=fold)
    inner = split_samples(train_ids, cfg, groups, strata)[0]
    return inner.train, inner.val


def _model(preset: Preset) -> ModelConfig:
    layers = preset.attention_layers
    return ModelConfig(embedding_dim=preset.embedding_dim, attention_heads=preset.attention_heads,
                       nucleotide_layers=layers, asv_layers=layers, sample_layers=layers,
                       dropout=preset.dropout)


def _train(preset: Preset, epochs: int, patience: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, patience=patience, lr=lr, seed=seed,
                       weight_decay=preset.weight_decay, device=preset.device,
                       parallel="none")


def _lists(folder: Path, train: list[str], val: list[str]) -> tuple[Path, Path]:
    write_lines(folder / "train_samples.txt", train)
    write_lines(folder / "val_samples.txt", val)
    return folder / "train_samples.txt", folder / "val_samples.txt"


def pretrain_fold(data_dir: Path, out: Path, train: list[str], val: list[str], fold: int,
                  preset: Preset) -> Path:
    """Self-supervised pretraining on the fold's inner-train samples (best epoch on inner-val);
    reused when ``out/encoder.pt`` exists for the same lists and settings."""
    from aam.training.pretrain import PretrainPaths, run_pretrain

    pretrain_settings = (preset.embedding_dim, preset.attention_heads, preset.attention_layers,
                         preset.token_limit, preset.batch_size, preset.pretrain_epochs,
                         preset.pretrain_patience, preset.pretrain_lr, preset.dropout,
                         preset.weight_decay, preset.asv_sampling, preset.device)
    key = hashlib.sha256(repr((train, val, pretrain_settings)).encode()).hexdigest()[:16]
    stamp = out / "inputs.sha"
    if (out / "encoder.pt").is_file() and stamp.is_file() and stamp.read_text() == key:
        return out / "encoder.pt"
    out.mkdir(parents=True, exist_ok=True)
    train_file, val_file = _lists(out, train, val)
    cfg = PretrainConfig(
        data=DataConfig(token_limit=preset.token_limit, asv_sampling=preset.asv_sampling,
                        batch_size=preset.batch_size),
        model=_model(preset),
        train=_train(preset, preset.pretrain_epochs, preset.pretrain_patience,
                     preset.pretrain_lr, seed=fold))
    run_pretrain(cfg, PretrainPaths(data_dir, out, train_file, val_file))
    stamp.write_text(key)
    return out / "encoder.pt"


def corpus_encoder(data_dir: Path, key: str, fold: int, train: list[str], val: list[str],
                   work: Path, preset: Preset, corpus_table: Path, encoders: dict) -> Path:
    """An encoder pretrained on the fold's training samples plus the unlabelled corpus
    (:mod:`aam_science.corpus`): trained on inner-train + every corpus sample, its best epoch
    chosen on inner-validation (study samples only). Cached in ``encoders`` like the study-only
    encoders."""
    from aam_science.corpus import prepare_joint

    cache_key = (key, "corpus", fold, tuple(train), tuple(val))
    if cache_key not in encoders:
        root = work / _tag(preset)
        prepared, corpus_ids = prepare_joint(data_dir, train + val, corpus_table,
                                             root / f"corpus-{key}" / f"fold~{fold}")
        encoders[cache_key] = pretrain_fold(prepared, root / f"pretrain-corpus-{key}" /
                                            f"fold~{fold}", train + corpus_ids, val, fold,
                                            preset)
    return encoders[cache_key]


def finetune_and_predict(data_dir: Path, data: PreparedData, out: Path, study: Study,
                         train: list[str], val: list[str], test: list[str], seed: int,
                         encoder: Path | None, preset: Preset, settings: dict | None = None):
    """Fine-tune on inner-train (best epoch on inner-val), then predict the test samples once;
    returns :class:`aam.predictions.Predictions`. ``settings``: further ``FinetuneConfig``
    fields (an ablation row's, e.g. ``attention_path``)."""
    from aam.inference import PredictConfig, load_predictor, predict_samples
    from aam.training.finetune import FinetunePaths, run_finetune

    out.mkdir(parents=True, exist_ok=True)
    train_file, val_file = _lists(out, train, val)
    transform = preset.target_transform if study.task == "regression" else "none"
    cfg = FinetuneConfig(
        data=DataConfig(token_limit=preset.token_limit, asv_sampling=preset.asv_sampling,
                        batch_size=preset.batch_size, target_transform=transform),
        model=_model(preset),
        train=_train(preset, preset.finetune_epochs, preset.finetune_patience,
                     preset.finetune_lr, seed=seed),
        task=study.task, target_column=study.target, freeze_base=preset.freeze_base,
        abundance_head_refit=preset.abundance_head_refit, selection_se=preset.selection_se,
        group_by=study.group_by,
        **{"attention_path": preset.attention_path, **(settings or {})})
    run_finetune(cfg, FinetunePaths(data_dir, out, train_file, val_file,
                                    pretrained_encoder=encoder, fold=out.parent.name))
    model, payload = load_predictor(out / "model.pt")
    return predict_samples(model, payload, data, test, PredictConfig(device=preset.device))


def sample_embeddings(encoder: Path, data: PreparedData, ids: list[str], preset: Preset
                      ) -> np.ndarray:
    """Pooled sample embeddings [N, D] of the pretrained encoder (eval mode)."""
    from aam.config import from_dict
    from aam.data.dataset import SampleDataset, make_loader
    from aam.models.pretrain import PretrainModel
    from aam.training.checkpoint import load_checkpoint

    payload = load_checkpoint(encoder, "encoder")
    cfg = from_dict(PretrainConfig, payload.config)
    model = PretrainModel(cfg)
    model.load_state_dict(payload.model_state)
    device = torch.device(preset.device)
    model.to(device).eval()
    loader = make_loader(SampleDataset(data, ids, cfg.data, seed=0), preset.batch_size, False, 0)
    rows = []
    with torch.inference_mode():
        for batch in loader:
            rows.append(model.encoder(batch.to(device)).sample_emb.float().cpu())
    return torch.cat(rows).numpy()


def _rf(features, train_idx, test_idx, y, task: str, seed: int, preset: Preset) -> np.ndarray:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
    # the settings of `aam rf-baseline` (RFConfig): max_features sqrt, relative abundances
    model = cls(n_estimators=preset.rf_trees, max_features=RFConfig("").max_features,
                random_state=seed, n_jobs=preset.threads)
    model.fit(features[train_idx], y[train_idx])
    if task == "classification":
        proba = np.zeros((len(test_idx), int(y.max()) + 1))
        proba[:, model.classes_] = model.predict_proba(features[test_idx])
        return proba
    return model.predict(features[test_idx])


def _linear(clr, train_idx, test_idx, y, groups, task: str) -> np.ndarray:
    """Ridge regression / L2 logistic regression on CLR abundances, the strength of the L2
    penalty chosen by grouped 5-fold CV over the training subjects only (the library's
    :func:`aam.baselines.linear.fit_linear`, which ``aam linear-baseline`` runs)."""
    from aam.baselines.linear import cv_splits, fit_linear

    splits = cv_splits(len(train_idx), task, groups=groups[train_idx])
    model = fit_linear(clr[train_idx], y[train_idx], task, splits)
    if task == "classification":
        proba = np.zeros((len(test_idx), int(y.max()) + 1))
        proba[:, model.classes_] = model.predict_proba(clr[test_idx])
        return proba
    return model.predict(clr[test_idx])


def run_study(study: Study, data_dir: Path, work: Path, preset: Preset,
              encoders: dict, corpus_table: Path | None = None) -> StudyResult:
    """Every variant of ``study`` on every fold and seed; ``encoders`` caches pretrained
    encoders across studies that share a ``pretrain_key`` and identical fold lists. With
    ``corpus_table`` the encoders are pretrained on the fold's training samples plus that
    unlabelled corpus (:func:`corpus_encoder`)."""
    start = time.perf_counter()
    data = load_prepared(data_dir)
    folds, subjects = outer_folds(data, study, preset)
    if preset.dev_fold is not None:  # recipe development: fold dev_fold's test subjects unseen
        data = data.subset(folds[preset.dev_fold][0])
        folds, subjects = outer_folds(data, study, preset)
    ids = list(data.sample_ids)
    index = {s: i for i, s in enumerate(ids)}
    subject_of = dict(zip(ids, subjects))
    raw, classes, actual = study_targets(data, study)
    result = StudyResult(study, ids, subjects, actual, classes, np.full(len(ids), -1))
    shape = (len(preset.seeds), len(ids)) + ((len(classes),) if classes else ())
    runs = {v: np.full(shape, np.nan) for v in ("rf", *_row_variants(preset))}
    rel = _relative_abundance(data)
    clr = _clr(data) if "linear" in runs else None
    for k, (train, test) in enumerate(folds):
        test_idx = np.array([index[s] for s in test])
        train_idx = np.array([index[s] for s in train])
        result.fold_of[test_idx] = k
        class_of = dict(zip(ids, raw)) if classes else None

        def member_inputs(member: int):
            """Inner split and pretrained encoder of ensemble member ``member``."""
            inner_train, inner_val = inner_split(train, subject_of, k, preset, class_of, member)
            log.info("%s fold %d member %d: %d train samples (%d inner-train, %d inner-val), "
                     "%d test; %d/%d/%d subjects", study.name, k, member, len(train),
                     len(inner_train), len(inner_val), len(test),
                     len({subject_of[s] for s in inner_train}),
                     len({subject_of[s] for s in inner_val}), len({subject_of[s] for s in test}))
            if not _needs_encoder(preset):
                return inner_train, inner_val, None
            # one pretraining per fold, on member 0's split (self-supervised: the other
            # members' validation subjects are among its unlabelled inputs, never test subjects)
            pre_train, pre_val = ((inner_train, inner_val) if member == 0 else
                                  inner_split(train, subject_of, k, preset, class_of, 0))
            key = study.pretrain_key or study.name
            if corpus_table is not None:
                return inner_train, inner_val, corpus_encoder(
                    data_dir, key, k, pre_train, pre_val, work, preset, corpus_table, encoders)
            return inner_train, inner_val, study_encoder(data_dir, key, k, pre_train, pre_val,
                                                         work, preset, encoders)

        if "hybrid-rf" in runs:
            emb = sample_embeddings(member_inputs(0)[2], data, ids, preset)
        if "linear" in runs:  # deterministic: one fit serves every seed's row
            runs["linear"][:, test_idx] = _linear(clr, train_idx, test_idx, actual, subjects,
                                                  study.task)
        for r, seed in enumerate(preset.seeds):
            inner_train, inner_val, encoder = member_inputs(r)
            runs["rf"][r, test_idx] = _rf(rel, train_idx, test_idx, actual, study.task, seed,
                                          preset)
            if "hybrid-rf" in runs:
                runs["hybrid-rf"][r, test_idx] = _rf(emb, train_idx, test_idx, actual,
                                                     study.task, seed, preset)
            for variant, enc in (("aam", encoder), ("aam-scratch", None)):
                if variant not in runs:
                    continue
                out = work / _tag(preset) / study.name / variant / f"fold~{k}" / f"seed~{seed}"
                pred = finetune_and_predict(data_dir, data, out, study, inner_train, inner_val,
                                            test, seed, enc, preset)
                runs[variant][r, test_idx] = _scores(pred, classes)
        log.info("%s fold %d done (%.0f s so far)", study.name, k, time.perf_counter() - start)
    if "aam-ensemble" in preset.variants and "aam" in runs:
        runs["aam-ensemble"] = runs["aam"].mean(axis=0, keepdims=True)
        runs["rf-ensemble"] = runs["rf"].mean(axis=0, keepdims=True)
    result.runs = runs
    result.seconds = time.perf_counter() - start
    return result


def study_targets(data: PreparedData, study: Study):
    """(target as text [N], classes or None, actual values or class indices [N]) of every
    prepared sample."""
    ids = list(data.sample_ids)
    raw = data.metadata.loc[ids, study.target].astype(str)
    classes = sorted(raw.unique()) if study.task == "classification" else None
    actual = (raw.map({c: i for i, c in enumerate(classes)}).to_numpy() if classes
              else data.metadata.loc[ids, study.target].astype(float).to_numpy())
    return raw, classes, actual


def study_encoder(data_dir: Path, key: str, fold: int, train: list[str], val: list[str],
                  work: Path, preset: Preset, encoders: dict) -> Path:
    """The fold's encoder pretrained on ``train`` (best epoch on ``val``), cached in
    ``encoders`` and on disk (the benchmark's own folder, so an ablation run reuses it)."""
    cache_key = (key, fold, tuple(train), tuple(val))
    if cache_key not in encoders:
        encoders[cache_key] = pretrain_fold(data_dir, work / _tag(preset) / f"pretrain-{key}" /
                                            f"fold~{fold}", train, val, fold, preset)
    return encoders[cache_key]


def _tag(preset: Preset) -> str:
    """Run folder of these settings (dev runs never share checkpoints with the benchmark)."""
    return "dev" if preset.dev_fold is not None else "bench"


def _row_variants(preset: Preset) -> list[str]:
    return [v for v in preset.variants if v != "aam-ensemble"]


def _needs_encoder(preset: Preset) -> bool:
    return bool({"aam", "hybrid-rf"} & set(preset.variants))


def _relative_abundance(data: PreparedData) -> np.ndarray:
    from aam.baselines.rf import relative_abundance

    return relative_abundance(data.counts).toarray()


def _clr(data: PreparedData) -> np.ndarray:
    """CLR of every sample over the whole table (the library's pseudocount, 0.5)."""
    from aam.baselines.features import clr_abundance

    return clr_abundance(data.counts)


def _scores(pred, classes: list[str] | None) -> np.ndarray:
    """Prediction values [N], or class probabilities [N, K] in the order of ``classes``."""
    if classes is None:
        return np.asarray(pred.prediction, dtype=float)
    column = {c: j for j, c in enumerate(pred.classes)}
    proba = np.zeros((len(pred.sample_ids), len(classes)))
    for j, c in enumerate(classes):
        if c in column:
            proba[:, j] = pred.proba[:, column[c]]
    return proba


def long_table(result: StudyResult) -> pd.DataFrame:
    """One row per (variant, run, sample): the out-of-fold predictions behind the table."""
    frames = []
    for variant, values in result.runs.items():
        for r in range(values.shape[0]):
            frame = pd.DataFrame({"study": result.study.name, "variant": variant, "run": r,
                                  "sample_id": result.sample_ids, "subject": result.subjects,
                                  "fold": result.fold_of, "actual": result.actual})
            if result.classes:
                for j, c in enumerate(result.classes):
                    frame[f"prob_{c}"] = values[r, :, j]
            else:
                frame["prediction"] = values[r]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)
