"""Which sample features let ridge regression reach the linear row? A development look (the
training subjects of one outer fold only), used to design the abundance head's fitted start.

    python benchmarks/dev_features.py --encoder ENCODER.pt [--study sleep-apnea-age]

ENCODER.pt: a pretrained encoder of that fold (e.g. the benchmark's
``<work>/dev/pretrain-sleep-apnea/fold~0/encoder.pt`` from a ``--dev-fold 0`` run). Prints the
pooled out-of-fold R² of ridge regression (penalty by grouped 5-fold CV inside each training
side) on several feature sets, over the same grouped folds the benchmark's dev mode uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from aam.config import PretrainConfig, from_dict  # noqa: E402
from aam.data.prepared import load_prepared  # noqa: E402
from aam.data.tokens import tokenize  # noqa: E402
from aam.models.pretrain import PretrainModel  # noqa: E402
from aam.training.checkpoint import load_checkpoint  # noqa: E402
from aam_science.runner import outer_folds  # noqa: E402
from aam_science.settings import STUDIES, preset  # noqa: E402


def asv_vectors(encoder: Path, sequences) -> np.ndarray:
    """The pretrained encoder's sequence-only ASV vectors [V, D] (eval mode)."""
    payload = load_checkpoint(encoder, "encoder")
    cfg = from_dict(PretrainConfig, payload.config)
    model = PretrainModel(cfg)
    model.load_state_dict(payload.model_state)
    model.eval()
    with torch.no_grad():
        tokens = torch.as_tensor(tokenize(sequences, cfg.model.max_bp)).long()
        return model.encoder.encode_asvs(tokens).numpy()


def pooled_r2(x, y, folds, ids, subjects) -> float:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold

    index = {s: i for i, s in enumerate(ids)}
    pred = np.zeros_like(y)
    for train, test in folds:
        tr, te = [index[s] for s in train], [index[s] for s in test]
        groups = subjects[tr]
        cv = list(GroupKFold(min(5, len(set(groups)))).split(tr, groups=groups))
        pred[te] = RidgeCV(alphas=np.logspace(-3, 6, 37), cv=cv).fit(x[tr], y[tr]).predict(x[te])
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", required=True)
    p.add_argument("--study", default="sleep-apnea-age")
    p.add_argument("--prepared-root", default=str(HERE / "out" / "science" / "prepared"))
    p.add_argument("--dev-fold", type=int, default=0)
    args = p.parse_args()
    study = STUDIES[args.study]
    settings = preset("cpu")
    data = load_prepared(Path(args.prepared_root) / study.name)
    folds, _ = outer_folds(data, study, settings)
    data = data.subset(folds[args.dev_fold][0])
    folds, subjects = outer_folds(data, study, settings)
    ids = list(data.sample_ids)
    y = data.metadata.loc[ids, study.target].astype(float).to_numpy()
    counts = data.counts.toarray().astype(float)
    vectors = asv_vectors(Path(args.encoder), data.sequences)
    rng = np.random.default_rng(0)
    relu = np.maximum(vectors @ rng.normal(size=(vectors.shape[1], 256)) /
                      np.sqrt(vectors.shape[1]), 0)
    present, logs = (counts > 0).astype(float), np.log1p(counts)
    log_half = np.log(counts + 0.5)
    features = {
        "CLR of the whole table (the linear row)": log_half - log_half.mean(1, keepdims=True),
        "presence + log1p per ASV": np.hstack([present, logs]),
        "sum over ASVs of [1, log1p] x random ReLU features": np.hstack([present @ relu,
                                                                          logs @ relu]),
        "sum over ASVs of [1, log1p] x the raw vectors": np.hstack([present @ vectors,
                                                                     logs @ vectors]),
    }
    print("| features | R² |\n|---|---|")  # noqa: T201
    for name, x in features.items():
        print(f"| {name} | {pooled_r2(x, y, folds, ids, subjects):.3f} |")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
