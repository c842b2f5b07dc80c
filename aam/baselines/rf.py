"""Random-forest baseline on the same prepared table and sample lists as AAM.

Features are the relative abundances of the prepared ASV table (rows of the count matrix divided by
the sample's depth), plus one-hot categorical metadata when ``categorical_columns`` are given; the
forest is fit on the train samples and evaluated on the evaluation list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from aam.atomic import atomic_path
from aam.baselines.features import category_features
from aam.config import TASKS
from aam.data.sample_ids import check_known
from aam.data.taxonomy import read_taxonomy, taxa_by_sequence  # noqa: F401  (re-exported)
from aam.data.targets import encode_classes, fit_classes, parse_regression_target
from aam.errors import InputError
from aam.predictions import metrics_from_predictions, write_metrics, write_predictions
from aam.reports import plots
from aam.settings import setting
from aam.validate import check_finite

log = logging.getLogger(__name__)

def parse_max_features(text: str | float | int) -> str | float | int:
    """``--max-features`` text: sqrt, log2, a fraction in (0, 1] or a count."""
    if not isinstance(text, str) or text in ("sqrt", "log2"):
        return text
    try:
        value = float(text)
        check_finite(value, "--max-features")
    except ValueError:
        raise InputError(f"--max-features must be sqrt, log2, a fraction in (0, 1] or a count; "
                         f"got {text!r}.") from None
    return int(value) if value > 1 else value


@dataclass(frozen=True)
class RFConfig:
    """Settings of one random-forest run (stored in its ``metrics.json``)."""

    metadata_column: str = setting(help="target column")
    task: str | None = setting(None, "regression or classification (default: the task recorded "
                               "by aam prepare)", choices=TASKS)
    n_estimators: int = setting(500, "trees in the forest")
    max_features: str | float | int = setting(
        "sqrt", "features per split: sqrt, log2, a fraction or a count",
        parse=parse_max_features)
    seed: int = setting(0, "seed of the forest")
    n_jobs: int = setting(-1, "sklearn n_jobs (-1: all cores)", runtime=True)
    top_features: int = setting(100, "ASVs in feature_importance.tsv")
    categorical_columns: tuple[str, ...] = setting(
        (), "metadata columns appended one-hot to the features (comma-separated, e.g. the "
        "categorical columns AAM fuses)")

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}.")
        if self.n_estimators < 1:
            raise InputError(f"n_estimators must be >= 1, got {self.n_estimators}.")
        if self.n_jobs == 0:
            raise InputError("n_jobs (--n-jobs) must be a positive count or negative (-1: all "
                             "cores), not 0.")
        if isinstance(self.max_features, (int, float)) and not isinstance(self.max_features, bool) \
                and not (0 < self.max_features <= 1 or (isinstance(self.max_features, int)
                                                         and self.max_features >= 1)):
            raise InputError(f"max_features (--max-features) must be sqrt, log2, a fraction in "
                             f"(0, 1] or a count >= 1; got {self.max_features}.")
        if self.top_features < 1:
            raise InputError(f"top_features must be >= 1, got {self.top_features}.")


@dataclass
class RFResult:
    """What one baseline run produced; ``predictions`` follows the predictions.tsv contract."""

    task: str
    predictions: pd.DataFrame  # sample_id, prediction, actual[, prob_<class>...]
    importances: pd.DataFrame  # sequence, importance[, taxon]
    classes: list[str]
    n_train: int
    wall_seconds: float
    config: dict
    category_importance: dict = field(default_factory=dict)  # "column=category" -> importance
    details: dict = field(default_factory=dict)  # fitted settings for metrics.json (e.g. alpha)


def relative_abundance(counts: sp.spmatrix) -> sp.csr_matrix:
    """Row-normalise a count matrix.

    Parameters
    ----------
    counts : sparse [n_samples, n_asvs]

    Returns
    -------
    csr_matrix float64 [n_samples, n_asvs]
        Each row sums to 1 (rows without reads stay 0).
    """
    counts = sp.csr_matrix(counts, dtype=np.float64)
    depth = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(1.0, depth, out=np.zeros_like(depth), where=depth > 0)
    return sp.csr_matrix(sp.diags(scale) @ counts)


def present_samples(sample_ids, table_ids, source: str) -> list[str]:
    """``sample_ids`` as a list, after checking every one is in the table.

    Raises
    ------
    InputError
        Some listed samples are not in the prepared table (naming them); they are never skipped.
    """
    check_known(list(sample_ids), table_ids, source)
    return list(sample_ids)


def target_values(metadata: pd.DataFrame, column: str, train_ids, eval_ids, task: str):
    """Targets of the train and evaluation samples, parsed as AAM's fine-tuning parses them.

    Returns
    -------
    y_train, y_eval : ndarray [N_train], [N_eval]
        float64 for regression; class labels (str) for classification.
    classes : list of str
        Sorted training classes (empty for regression).

    Raises
    ------
    InputError
        Missing or non-numeric values, a single training class, or evaluation labels that never
        occur in training (the samples are named).
    """
    if task == "regression":
        return (parse_regression_target(metadata, column, train_ids),
                parse_regression_target(metadata, column, eval_ids), [])
    classes = fit_classes(metadata, column, train_ids)
    labels = np.asarray(classes, dtype=object)
    y_train = labels[encode_classes(metadata, column, train_ids, classes)]
    y_eval = labels[encode_classes(metadata, column, eval_ids, classes)]
    return y_train.astype(str), y_eval.astype(str), classes


def fit_random_forest(data, train_ids, eval_ids, cfg: RFConfig, taxonomy=None) -> RFResult:
    """Fit the forest on ``train_ids`` and predict ``eval_ids`` of a prepared dataset.

    Parameters
    ----------
    data : PreparedData
        ``sample_ids``, ``sequences``, ``counts`` csr [n_samples, n_asvs], ``metadata``, ``info``.
    train_ids, eval_ids : sequence of str
        Sample lists; IDs not in the table are refused (InputError naming them).
    cfg : RFConfig
    taxonomy : pd.Series, optional
        Taxon by ASV sequence (or by MD5 of the sequence), from :func:`read_taxonomy`.

    Returns
    -------
    RFResult
    """
    task = cfg.task or data.info.get("task") or "regression"
    train_ids = present_samples(train_ids, data.sample_ids, "the train list")
    eval_ids = present_samples(eval_ids, data.sample_ids, "the evaluation list")
    row = {s: i for i, s in enumerate(data.sample_ids)}
    features = relative_abundance(data.counts)
    cat_train, cat_eval, cat_names = category_features(data.metadata, cfg.categorical_columns,
                                                       train_ids, eval_ids)
    x_train = sp.hstack([features[[row[s] for s in train_ids]], cat_train], format="csr")
    x_eval = sp.hstack([features[[row[s] for s in eval_ids]], cat_eval], format="csr")
    y_train, y_eval, classes = target_values(data.metadata, cfg.metadata_column, train_ids,
                                             eval_ids, task)
    model_cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
    model = model_cls(n_estimators=cfg.n_estimators, max_features=cfg.max_features,
                      random_state=cfg.seed, n_jobs=cfg.n_jobs)
    log.info("fitting a %d-tree random forest (%s) on %d samples x %d ASVs", cfg.n_estimators,
             task, x_train.shape[0], x_train.shape[1])
    start = time.perf_counter()
    model.fit(x_train, y_train)
    wall = time.perf_counter() - start
    log.info("random forest fitted in %.1f s; predicting %d samples", wall, len(eval_ids))
    frame = pd.DataFrame({"sample_id": eval_ids, "prediction": model.predict(x_eval),
                          "actual": y_eval})
    if task == "classification":
        proba = model.predict_proba(x_eval)  # [N_eval, K] in model.classes_ order
        column_of = {str(c): k for k, c in enumerate(model.classes_)}
        for cls in classes:
            frame[f"prob_{cls}"] = proba[:, column_of[cls]]
    n_asvs = len(data.sequences)
    importances = feature_importances(model.feature_importances_[:n_asvs], data.sequences,
                                      cfg.top_features, taxonomy)
    by_category = dict(zip(cat_names, map(float, model.feature_importances_[n_asvs:])))
    return RFResult(task, frame, importances, classes, len(train_ids), wall, asdict(cfg),
                    by_category)


def feature_importances(importance, sequences, top: int, taxonomy=None) -> pd.DataFrame:
    """The ``top`` ASVs by impurity importance: columns sequence, importance[, taxon]."""
    order = np.argsort(-np.asarray(importance), kind="stable")[:top]
    frame = pd.DataFrame({"sequence": [sequences[i] for i in order],
                          "importance": np.asarray(importance)[order]})
    if taxonomy is not None:
        frame["taxon"] = taxa_by_sequence(taxonomy, frame["sequence"]).to_numpy()
    return frame


def write_rf_outputs(result: RFResult, output: str | Path, fold: int | None = None,
                     model: str = "rf", label: str = "random forest") -> dict:
    """Write ``predictions.tsv`` at ``output`` and, beside it, ``metrics.json``,
    ``feature_importance.tsv`` (ASVs only; categorical features' importances go to
    ``metrics.json`` as ``category_importance``) and a figure (``predicted_vs_actual.svg`` or
    ``confusion_matrix.svg``, each with a PNG twin). ``model`` names the baseline in
    ``metrics.json`` and ``label`` in the figure. Returns the metrics dict."""
    output = Path(output)
    out_dir = output.parent
    frame = result.predictions
    proba = frame[[f"prob_{c}" for c in result.classes]].to_numpy() if result.classes else None
    write_predictions(output, frame["sample_id"], frame["prediction"], actual=frame["actual"],
                      proba=proba, classes=result.classes or None)
    metrics = {**metrics_from_predictions(frame), "model": model,
               "seed": result.config["seed"], "fold": fold, "n_train": result.n_train,
               "wall_seconds": round(result.wall_seconds, 3), **result.details,
               "config": result.config}
    if result.category_importance:
        metrics["category_importance"] = result.category_importance
    write_metrics(out_dir / "metrics.json", metrics)
    with atomic_path(out_dir / "feature_importance.tsv") as tmp:
        result.importances.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    column = result.config["metadata_column"]
    if result.task == "classification":
        fig = plots.confusion({label: frame}, result.classes)
        plots.save_figure(fig, out_dir / "confusion_matrix.svg")
    else:
        fig = plots.predicted_vs_actual({label: frame}, column)
        plots.save_figure(fig, out_dir / "predicted_vs_actual.svg")
    return metrics
