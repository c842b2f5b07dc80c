"""Linear baseline on the same prepared table and sample lists as AAM: ridge regression, or L2
logistic regression for classification, on CLR abundances (plus one-hot categorical metadata).

The strength of the L2 penalty is chosen by cross-validation over the training samples only:
grouped K-fold by subject (``group_by``) when given, else shuffled K-fold (stratified for
classification). The benchmark's ``linear`` row (``benchmarks/aam_science``) calls
:func:`fit_linear` too, so both fit the same model.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from aam.baselines.features import DEFAULT_PSEUDOCOUNT, category_features, clr_abundance
from aam.baselines.rf import (TASKS, RFResult, feature_importances, present_samples,
                              target_values)
from aam.data.metadata import column_labels
from aam.errors import InputError
from aam.settings import setting

log = logging.getLogger(__name__)

RIDGE_ALPHAS = np.logspace(-2, 5, 29)  # ridge penalties tried (the benchmark's grid)
LOGISTIC_CS = np.logspace(-4, 2, 13)  # inverse penalties of the logistic regression


@dataclass(frozen=True)
class LinearConfig:
    """Settings of one linear-baseline run (stored in its ``metrics.json``)."""

    metadata_column: str = setting(help="target column")
    task: str | None = setting(None, "regression or classification (default: the task recorded "
                               "by aam prepare)", choices=TASKS)
    group_by: str = setting("", "subject column: the penalty's CV folds keep a subject's "
                            "samples together (default: plain K-fold over samples)")
    cv_folds: int = setting(5, "CV folds choosing the L2 penalty (fewer with fewer subjects)")
    pseudocount: float = setting(DEFAULT_PSEUDOCOUNT, "added to every count before the CLR")
    categorical_columns: tuple[str, ...] = setting(
        (), "metadata columns appended one-hot to the features (comma-separated, e.g. the "
        "categorical columns AAM fuses)")
    seed: int = setting(0, "seed of the shuffled K-fold split (without --group-by)")
    top_features: int = setting(100, "ASVs in feature_importance.tsv")

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}.")
        if self.cv_folds < 2:
            raise InputError(f"cv_folds (--cv-folds) must be >= 2, got {self.cv_folds}.")
        if not self.pseudocount > 0:
            raise InputError(f"pseudocount (--pseudocount) must be > 0, got {self.pseudocount}.")
        if self.top_features < 1:
            raise InputError(f"top_features must be >= 1, got {self.top_features}.")


def cv_splits(n: int, task: str, y=None, groups=None, folds: int = 5, seed: int = 0) -> list:
    """(train, test) index pairs over ``n`` training samples for choosing the penalty.

    Grouped K-fold (``min(folds, groups)`` folds) with ``groups``; else shuffled K-fold, stratified
    by class for classification (fewer folds when the rarest class is smaller).

    Raises
    ------
    InputError
        Fewer than two groups (or samples of the rarest class) to cross-validate over.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    index = np.arange(n)
    if groups is not None:
        groups = np.asarray(groups)
        k = min(folds, len(np.unique(groups)))
        if k < 2:
            raise InputError("the linear baseline's penalty is cross-validated over subjects, "
                             "but the training samples hold one subject; train on more "
                             "subjects or leave --group-by out.")
        return list(GroupKFold(k).split(index, groups=groups))
    if task == "classification":
        k = min(folds, int(pd.Series(y).value_counts().min()))
        if k >= 2:
            return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(index, y))
    k = min(folds, n)
    if k < 2:
        raise InputError(f"the linear baseline needs at least 2 training samples, got {n}.")
    return list(KFold(k, shuffle=True, random_state=seed).split(index))


def fit_linear(x: np.ndarray, y: np.ndarray, task: str, splits: list):
    """Ridge (regression) or L2 logistic regression (classification, log loss) on ``x``, the
    penalty chosen over ``splits`` (from :func:`cv_splits`); returns the fitted estimator."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    if task == "classification":
        model = LogisticRegressionCV(Cs=LOGISTIC_CS, cv=splits, max_iter=2000,
                                     scoring="neg_log_loss")
        with warnings.catch_warnings():  # scikit-learn 1.9 announces new defaults
            warnings.simplefilter("ignore", FutureWarning)
            model.fit(x, y)
        return model
    return RidgeCV(alphas=RIDGE_ALPHAS, cv=splits).fit(x, y)


def subject_labels(metadata: pd.DataFrame, column: str, sample_ids) -> np.ndarray:
    """The ``column`` value (subject) of every sample, stripped as ``aam split`` reads it."""
    if column not in metadata.columns:
        raise InputError(f"--group-by column '{column}' is not in the prepared metadata "
                         f"(columns: {', '.join(map(str, metadata.columns))}); name the subject "
                         "column, or leave --group-by out.")
    return column_labels(metadata.loc[list(sample_ids), column], "--group-by",
                         "the prepared metadata").to_numpy()


def fit_linear_baseline(data, train_ids, eval_ids, cfg: LinearConfig, taxonomy=None) -> RFResult:
    """Fit the linear model on ``train_ids`` and predict ``eval_ids`` of a prepared dataset.

    Parameters
    ----------
    data : PreparedData
    train_ids, eval_ids : sequence of str
        IDs not in the table are refused (InputError naming them).
    cfg : LinearConfig
    taxonomy : pd.Series, optional

    Returns
    -------
    RFResult
        ``importances``: ASVs by absolute coefficient (``coefficient`` signed; per class
        ``coef_<class>`` for more than two classes, the importance then being the largest
        absolute one); ``details``: the chosen penalty and the CV folds.
    """
    task = cfg.task or data.info.get("task") or "regression"
    train_ids = present_samples(train_ids, data.sample_ids, "the train list")
    eval_ids = present_samples(eval_ids, data.sample_ids, "the evaluation list")
    row = {s: i for i, s in enumerate(data.sample_ids)}
    clr = clr_abundance(data.counts, cfg.pseudocount)
    cat_train, cat_eval, cat_names = category_features(data.metadata, cfg.categorical_columns,
                                                       train_ids, eval_ids)
    x_train = np.hstack([clr[[row[s] for s in train_ids]], cat_train])
    x_eval = np.hstack([clr[[row[s] for s in eval_ids]], cat_eval])
    y_train, y_eval, classes = target_values(data.metadata, cfg.metadata_column, train_ids,
                                             eval_ids, task)
    groups = subject_labels(data.metadata, cfg.group_by, train_ids) if cfg.group_by else None
    splits = cv_splits(len(train_ids), task, y_train, groups, cfg.cv_folds, cfg.seed)
    log.info("fitting a %s linear model on %d samples x %d features (penalty by %d-fold %sCV)",
             task, *x_train.shape, len(splits), "grouped " if groups is not None else "")
    start = time.perf_counter()
    model = fit_linear(x_train, y_train, task, splits)
    wall = time.perf_counter() - start
    frame = pd.DataFrame({"sample_id": eval_ids, "prediction": model.predict(x_eval),
                          "actual": y_eval})
    coef = np.atleast_2d(model.coef_)  # [1 or K, F]
    if task == "classification":
        proba = model.predict_proba(x_eval)
        column_of = {str(c): k for k, c in enumerate(model.classes_)}
        for cls in classes:
            frame[f"prob_{cls}"] = proba[:, column_of[cls]]
        details = {"penalty_C": float(np.ravel(model.C_)[0])}
    else:
        details = {"penalty_alpha": float(model.alpha_)}
    details["cv_folds"] = len(splits)
    n_asvs = len(data.sequences)
    weight = np.abs(coef).max(axis=0)  # [F]
    importances = feature_importances(weight[:n_asvs], data.sequences, cfg.top_features,
                                      taxonomy)
    position = {seq: i for i, seq in enumerate(data.sequences)}
    order = [position[seq] for seq in importances["sequence"]]
    if len(coef) == 1:
        importances.insert(2, "coefficient", coef[0, order])
    else:
        for k, cls in enumerate(model.classes_):
            importances.insert(2 + k, f"coef_{cls}", coef[k, order])
    by_category = {name: float(weight[n_asvs + j]) for j, name in enumerate(cat_names)}
    log.info("linear model fitted in %.2f s (%s); predicting %d samples", wall, details,
             len(eval_ids))
    return RFResult(task, frame, importances, classes, len(train_ids), wall, asdict(cfg),
                    by_category, details)
