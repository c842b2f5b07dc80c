"""The bad-input catalogue: every command meets user mistakes with one stderr line, exit 2 and no
output left behind (docs/bad-input.md lists the same cases and messages).

Each case runs the command in-process through ``aam.cli.__main__.main`` on a tiny simulated
dataset (24 samples x 40 ASVs, made once per module); two run as real subprocesses.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import zipfile
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from aam.cli.__main__ import main as aam_main
from aam.config import ModelConfig, PretrainConfig, to_dict
from aam.data.biom_io import read_table, write_table
from aam.errors import InputError
from aam.models.pretrain import PretrainModel
from aam.training.checkpoint import Checkpoint, save_checkpoint

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "4", "--token-limit", "8", "--device", "cpu", "--epochs", "1"]


def _metadata_variant(sim: Path, out: Path, name: str, **edits) -> Path:
    """A copy of the simulated metadata with ``column=(row, value)`` or ``column=value`` edits."""
    md = pd.read_csv(sim / "metadata.tsv", sep="\t", dtype=str)
    for column, edit in edits.items():
        if isinstance(edit, tuple):
            md.loc[edit[0], column] = edit[1]
        else:
            md[column] = edit
    path = out / name
    md.to_csv(path, sep="\t", index=False)
    return path


def _encoder_checkpoint(path: Path, embedding_dim: int, weights_dim: int) -> Path:
    """An encoder.pt whose stored config says ``embedding_dim`` but whose weights are
    ``weights_dim`` wide (equal: a valid encoder; different: an incompatible one)."""
    model_cfg = ModelConfig(embedding_dim=weights_dim, attention_heads=2, nucleotide_layers=1,
                            asv_layers=1, sample_layers=1, max_bp=100)
    cfg = PretrainConfig(model=model_cfg)
    state = PretrainModel(cfg).state_dict()
    config = to_dict(cfg)
    config["model"]["embedding_dim"] = embedding_dim
    save_checkpoint(path, Checkpoint("encoder", config, state))
    return path


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> SimpleNamespace:
    """Simulated inputs, prepared folders, a 1-epoch model.pt and crafted bad files."""
    root = tmp_path_factory.mktemp("bad")
    sim, bad = root / "sim", root / "bad"
    bad.mkdir()
    assert aam_main(["simulate", "--output-dir", str(sim), "--samples", "24", "--asvs", "40",
                     "--seq-length", "100", "--subjects", "4"]) == 0
    table, tree = sim / "table.biom", sim / "tree.nwk"
    one = _metadata_variant(sim, bad, "one.tsv", one_class="x")
    for name, extra in (("prep", ["--tree", str(tree)]), ("notree", []),
                        ("prep_one", ["--metadata", str(one)])):
        argv = ["prepare", "--table", str(table), "--metadata", str(sim / "metadata.tsv"),
                "--metadata-column", "target", "--categorical-columns", "category,batch",
                "--output-dir", str(root / name), *extra]
        assert aam_main(argv) == 0
    run = root / "run"
    assert aam_main(["train", "--data-dir", str(root / "prep"), "--output-dir", str(run),
                     *TINY]) == 0
    model = run / "model.pt"
    payload = torch.load(model, weights_only=True)
    payload["model_state"] = {k: v[..., :-1] if v.ndim else v
                              for k, v in payload["model_state"].items()}
    torch.save(payload, bad / "mismatched.pt")
    (bad / "truncated.pt").write_bytes(model.read_bytes()[:3000])
    (bad / "a_file").write_text("not a folder\n")
    files = {
        "bad_key.yaml": "data:\n  batch_sise: 4\n",
        "bad_type.yaml": "model:\n  embedding_dim: big\n",
        "bad_section.yaml": "fusion:\n  nmae: gmu\n",
        "epochs_text.yaml": "train:\n  epochs: ten\n",
        "batch_one.yaml": "data:\n  batch_size: 1\n",
        "unsafe.yaml": "train: !!python/object/apply:os.system ['true']\n",
        "unknown.txt": "NOT-A-SAMPLE\nS01\n",
    }
    for name, text in files.items():
        (bad / name).write_text(text)
    _crafted_reliability_inputs(sim, bad, run)
    return SimpleNamespace(
        root=root, sim=sim, table=table, tree=tree, md=sim / "metadata.tsv", bad=bad,
        prep=root / "prep", notree=root / "notree", prep_one=root / "prep_one", run=run,
        model=model, encoder=_encoder_checkpoint(bad / "encoder.pt", 16, 16),
        encoder_conflict=_encoder_checkpoint(bad / "encoder_conflict.pt", 32, 16),
        inf_md=_metadata_variant(sim, bad, "inf.tsv", target=(2, "inf")),
        nan_md=_metadata_variant(sim, bad, "nan.tsv", target="NaN"),
        unseen_md=_metadata_variant(sim, bad, "unseen.tsv", category=(slice(0, 3), "site-zzz")),
    )


def _table_variant(sim: Path, path: Path, edit) -> None:
    """A copy of the simulated table with ``edit(sample_ids, counts)`` applied."""
    table = read_table(sim / "table.biom")
    ids, counts = list(table.sample_ids), table.counts.tolil()
    edit(ids, counts)
    write_table(path, ids, table.feature_ids, counts.tocsr())


def _set_first(value):
    def edit(ids, counts):
        counts[0, counts.tocsr()[0].indices[0]] = value
    return edit


def _crafted_reliability_inputs(sim: Path, bad: Path, run: Path) -> None:
    """Inputs of the reliability classes (numbers, sample IDs, archives, checkpoints)."""
    for name, value in (("negative", -3.0), ("nan_count", np.nan), ("fraction", 2.5)):
        _table_variant(sim, bad / f"{name}.biom", _set_first(value))

    def near_duplicate(ids, counts):
        ids[1] = f" {ids[0]} "
    _table_variant(sim, bad / "near_duplicate.biom", near_duplicate)
    newick = (sim / "tree.nwk").read_text()
    length = re.search(r":([0-9.eE+-]+)", newick).group(1)
    (bad / "negative_branch.nwk").write_text(newick.replace(f":{length}", ":-0.5", 1))
    (bad / "nan_branch.nwk").write_text(newick.replace(f":{length}", ":nan", 1))
    (bad / "malformed.nwk").write_text(newick[: len(newick) // 2] + ");")
    ids = [f"S{i:02d}" for i in range(1, 25)]
    (bad / "dm.ids.txt").write_text("\n".join(ids) + "\n")
    rng = np.random.default_rng(0)
    base = rng.random((24, 24))
    good = (base + base.T) / 2
    np.fill_diagonal(good, 0)
    variants = {"asymmetric": base * (1 - np.eye(24)), "diagonal": good + np.eye(24),
                "negative_dm": good - 2 * (1 - np.eye(24)),
                "nan_dm": np.where(np.eye(24) == 1, 0, np.where(good > 0.9, np.nan, good))}
    for name, matrix in variants.items():
        np.save(bad / f"{name}.npy", matrix)
        (bad / f"{name}.ids.txt").write_text("\n".join(ids) + "\n")
    np.save(bad / "object_dm.npy", good.astype(object), allow_pickle=True)
    (bad / "object_dm.ids.txt").write_text("\n".join(ids) + "\n")
    with zipfile.ZipFile(bad / "bomb.qza", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("u/metadata.yaml", "type: FeatureTable[Frequency]\n")
        archive.writestr("u/data/feature-table.biom", b"\0" * (16 * 2**20))
    payload = torch.load(run / "model.pt", weights_only=True)
    for name, edit in (("format_text.pt", {"format_version": "1; drop"}),
                       ("format_float.pt", {"format_version": 1.5}),
                       ("kind_other.pt", {"kind": "forest"}),
                       ("epoch_text.pt", {"epoch": "x"}),
                       ("best_nan.pt", {"best_metric": float("nan")}),
                       ("rng_garbage.pt", {"rng_state": {"torch": torch.zeros(3)}}),
                       ("vocab_garbage.pt", {"categorical_vocab": {"category": 5}}),
                       ("transform_garbage.pt", {"target_transform": {"name": "zscore"}})):
        torch.save({**payload, **edit}, bad / name)
    huge = copy.deepcopy(payload)
    huge["config"]["model"]["embedding_dim"] = 8192  # ~4e9 parameters from 1e5 stored weights
    torch.save(huge, bad / "huge_sizes.pt")
    lists = {
        "dup.txt": "S01\nS02\nS01\n",
        "tab.txt": "S01\tS02\n",
        "long_unknown.txt": "S01\n" + "ACGT" * 25 + "\n",
        "binary.txt": "S01\n",
        "train_a.txt": "\n".join(ids[:16]) + "\n",
        "val_overlap.txt": "\n".join(ids[14:20]) + "\n",
        "val_unknown.txt": "\n".join(ids[16:20] + ["GHOST"]) + "\n",
        "val_ok.txt": "\n".join(ids[16:20]) + "\n",
    }
    for name, text in lists.items():
        (bad / name).write_text(text)
    (bad / "binary.txt").write_bytes(b"S01\n\xff\xfe\x00\n")
    yamls = {"epochs_nan.yaml": "train:\n  epochs: .nan\n",
             "lr_inf.yaml": "train:\n  lr: .inf\n",
             "loss_weight_negative.yaml": "nucleotide_loss_weight: -1\n",
             "seed_negative.yaml": "train:\n  seed: -4\n"}
    for name, text in yamls.items():
        (bad / name).write_text(text)


def _prepare(w, out, *flags, metadata=None, column="target"):
    return ["prepare", "--table", str(w.table), "--metadata", str(metadata or w.md),
            "--metadata-column", column, "--output-dir", str(out), *flags]


def _pretrain(w, out, *flags, data=None):
    return ["pretrain", "--data-dir", str(data or w.prep), "--output-dir", str(out), *flags]


def _train(w, out, *flags, data=None):
    return ["train", "--data-dir", str(data or w.prep), "--output-dir", str(out), *flags]


def _predict(w, out, model, *flags):
    return ["predict", "--model", str(model), "--data-dir", str(w.prep), "--output",
            str(out / "predictions.tsv"), *flags]


def _rf(w, out, *flags, data=None, train=None, column="target"):
    lists = w.run / "train_samples.txt", w.run / "val_samples.txt"
    return ["rf-baseline", "--data-dir", str(data or w.prep), "--metadata-column", column,
            "--train-samples", str(train or lists[0]), "--val-samples", str(lists[1]),
            "--output", str(out / "predictions.tsv"), *flags]


# id -> (argv builder (w, out) -> argv, regex the one error line must match)
CASES = {
    "simulate-too-few-samples": (
        lambda w, o: ["simulate", "--output-dir", str(o), "--samples", "2"],
        r"n_samples \(--samples\) must be >= 8, got 2"),
    "prepare-missing-table": (
        lambda w, o: ["prepare", "--table", str(w.bad / "nope.biom"), "--metadata", str(w.md),
                      "--metadata-column", "target", "--output-dir", str(o)],
        r"table file not found: .*nope\.biom"),
    "prepare-unknown-target-column": (
        lambda w, o: _prepare(w, o, column="Target"),
        r"target column 'Target' not found in .*metadata\.tsv.*Available columns: .*target"),
    "prepare-non-numeric-target": (
        lambda w, o: _prepare(w, o, column="category"),
        r"'category' must be numeric for regression.*--task classification"),
    "prepare-inf-target": (
        lambda w, o: _prepare(w, o, metadata=w.inf_md),
        r"Target 'target' in .*inf\.tsv has infinite values for 1 \(first 1: S03\) samples"),
    "prepare-all-nan-target": (
        lambda w, o: _prepare(w, o, metadata=w.nan_md),
        r"Target 'target' .* is empty or missing for all 24"),
    "prepare-empty-after-min-depth": (
        lambda w, o: _prepare(w, o, "--min-depth", "100000000"),
        r"--min-depth emptied the table\. Lower --min-depth"),
    "prepare-output-under-a-file": (
        lambda w, o: _prepare(w, w.bad / "a_file" / "sub"),
        r"cannot use .*a_file/sub as a folder: it or a parent is an existing file"),
    "split-unknown-group-column": (
        lambda w, o: ["split", "--metadata", str(w.md), "--group-by", "subjekt",
                      "--output-dir", str(o)],
        r"group column 'subjekt' not found in .*Available columns: .*subject"),
    "split-more-folds-than-groups": (
        lambda w, o: ["split", "--metadata", str(w.md), "--group-by", "subject", "--folds", "9",
                      "--output-dir", str(o)],
        r"9 folds but only 4 groups.*Use --folds 4 or fewer"),
    "pretrain-config-misspelled-key": (
        lambda w, o: _pretrain(w, o, "--config", str(w.bad / "bad_key.yaml")),
        r"Unknown config key\(s\) in 'data': batch_sise\. Known keys: .*batch_size"),
    "pretrain-config-wrong-type": (
        lambda w, o: _pretrain(w, o, "--config", str(w.bad / "bad_type.yaml")),
        r"Config key 'model\.embedding_dim' must be a number, got 'big'"),
    "pretrain-config-unsafe-yaml-tag": (
        lambda w, o: _pretrain(w, o, "--config", str(w.bad / "unsafe.yaml")),
        r"unsafe\.yaml is not plain YAML at line 1: could not determine a constructor .*"
        r"python/object/apply:os\.system"),
    "pretrain-odd-batch-size": (
        lambda w, o: _pretrain(w, o, "--batch-size", "7"),
        r"batch_size must be even and at least 2 \(the distance loss compares every pair "
        r"of samples in a batch\), got 7"),
    "pretrain-batch-size-too-small": (
        lambda w, o: _pretrain(w, o, "--config", str(w.bad / "batch_one.yaml")),
        r"batch_size must be even and at least 2 .* got 1\."),
    "pretrain-token-limit-zero": (
        lambda w, o: _pretrain(w, o, "--token-limit", "0"),
        r"token_limit must be >= 1, got 0"),
    "pretrain-without-distances": (
        lambda w, o: _pretrain(w, o, *TINY, data=w.notree),
        r"no distances.h5.*(--tree|--distance-matrix)"),
    "pretrain-resume-truncated-checkpoint": (
        lambda w, o: _pretrain(w, o, *TINY, "--resume-from", str(w.bad / "truncated.pt")),
        r"truncated\.pt is corrupt or truncated and could not be read.*Re-run the job"),
    "pretrain-resume-from-predictor": (
        lambda w, o: _pretrain(w, o, *TINY, "--resume-from", str(w.model)),
        r"model\.pt is a 'predictor' checkpoint but a 'encoder' checkpoint is needed"),
    "train-config-wrong-type": (
        lambda w, o: _train(w, o, "--config", str(w.bad / "epochs_text.yaml")),
        r"Config key 'train\.epochs' must be a number, got 'ten'"),
    "train-config-misspelled-key": (
        lambda w, o: _train(w, o, "--config", str(w.bad / "bad_section.yaml")),
        r"Unknown config key\(s\) in 'fusion': nmae\. Known keys: .*name"),
    "train-unknown-fusion": (
        lambda w, o: _train(w, o, *TINY, "--categorical-fusion", "gmu2"),
        r"Unknown fusion 'gmu2'\. Choose one of: add, concat, cross-attention, .*gmu, perceiver"),
    "train-incompatible-pretrained-encoder": (
        lambda w, o: _train(w, o, *TINY, "--pretrained-encoder", str(w.encoder_conflict)),
        r"the pretrained encoder's weights do not fit this model \(size mismatch for "
        r"nucleotide\.token_emb\.weight: .*\); use the model sizes of the pretraining run"),
    "train-predictor-as-pretrained-encoder": (
        lambda w, o: _train(w, o, *TINY, "--pretrained-encoder", str(w.model)),
        r"is a 'predictor' checkpoint but a 'encoder' checkpoint is needed"),
    "train-unknown-target-column": (
        lambda w, o: _train(w, o, *TINY, "--metadata-column", "targt"),
        r"Column 'targt' is not in metadata\.tsv; available columns: .*Fix the column name"),
    "train-single-class-target": (
        lambda w, o: _train(w, o, *TINY, "--metadata-column", "one_class", "--task",
                            "classification", data=w.prep_one),
        r"Target 'one_class' has a single class \('x'\) in the training samples; "
        r"classification needs at least 2"),
    "train-resume-truncated-checkpoint": (
        lambda w, o: _train(w, o, *TINY, "--resume-from", str(w.bad / "truncated.pt")),
        r"truncated\.pt is corrupt or truncated"),
    "train-unknown-sample-in-list": (
        lambda w, o: _train(w, o, *TINY, "--train-samples", str(w.bad / "unknown.txt"),
                            "--val-samples", str(w.run / "val_samples.txt")),
        r"NOT-A-SAMPLE"),
    "predict-encoder-checkpoint": (
        lambda w, o: _predict(w, o, w.encoder),
        r"is an encoder checkpoint .*pass the model\.pt written by aam train"),
    "predict-mismatched-weights": (
        lambda w, o: _predict(w, o, w.bad / "mismatched.pt"),
        r"mismatched\.pt: the weights do not fit the model config stored with them \(size "
        r"mismatch for encoder\..*\)\. Re-run aam train"),
    "predict-truncated-checkpoint": (
        lambda w, o: _predict(w, o, w.bad / "truncated.pt"),
        r"truncated\.pt is corrupt or truncated and could not be read"),
    "predict-zero-passes": (
        lambda w, o: _predict(w, o, w.model, "--prediction-passes", "0"),
        r"--prediction-passes must be >= 1, got 0"),
    "predict-samples-not-in-table": (
        lambda w, o: _predict(w, o, w.model, "--samples", str(w.bad / "unknown.txt")),
        r"1 samples in .*unknown\.txt are not in the prepared table \(first 1: NOT-A-SAMPLE\)"),
    "rf-baseline-missing-sample-list": (
        lambda w, o: _rf(w, o, train=w.bad / "no_list.txt"),
        r"sample list not found: .*no_list\.txt"),
    "rf-baseline-single-class-target": (
        lambda w, o: _rf(w, o, "--task", "classification", data=w.prep_one, column="one_class"),
        r"Target 'one_class' has a single class"),
    "compare-no-runs": (
        lambda w, o: ["compare", "--results-dir", str(w.bad), "--output-dir", str(o)],
        r"no predictions\.tsv with a parseable path under .*Expected finetune/"),
}


def _rf_lists(w, out, train, val, *flags):
    return ["rf-baseline", "--data-dir", str(w.prep), "--metadata-column", "target",
            "--train-samples", str(w.bad / train), "--val-samples", str(w.bad / val),
            "--output", str(out / "predictions.tsv"), *flags]


def _lists(w, train, val):
    return ["--train-samples", str(w.bad / train), "--val-samples", str(w.bad / val)]


# Reliability classes (issue 15): the same contract, and the output folder is left as it was.
# class -> id -> (argv builder (w, out) -> argv, regex of the one error line)
RELIABILITY = {
    "numbers": {
        "train-lr-nan": (lambda w, o: _train(w, o, *TINY, "--lr", "nan"),
                         r"--lr must be a finite number, got nan"),
        "train-weight-decay-nan": (lambda w, o: _train(w, o, *TINY, "--weight-decay", "nan"),
                                   r"--weight-decay must be a finite number, got nan"),
        "pretrain-lr-inf": (lambda w, o: _pretrain(w, o, *TINY, "--lr", "inf"),
                            r"--lr must be a finite number, got inf"),
        "train-count-penalty-negative": (
            lambda w, o: _train(w, o, *TINY, "--count-penalty", "-1"),
            r"count_penalty must be >= 0, got -1"),
        "train-seed-negative": (lambda w, o: _train(w, o, *TINY, "--seed", "-1"),
                                r"--seed must be >= 0 and <= 4294967295, got -1"),
        "train-yaml-epochs-nan": (
            lambda w, o: _train(w, o, "--config", str(w.bad / "epochs_nan.yaml")),
            r"Config key 'train\.epochs' must be a finite number, got nan"),
        "train-yaml-lr-inf": (lambda w, o: _train(w, o, "--config", str(w.bad / "lr_inf.yaml")),
                              r"Config key 'train\.lr' must be a finite number, got inf"),
        "pretrain-yaml-negative-loss-weight": (
            lambda w, o: _pretrain(w, o, "--config", str(w.bad / "loss_weight_negative.yaml")),
            r"nucleotide_loss_weight must be >= 0, got -1"),
        "train-yaml-seed-negative": (
            lambda w, o: _train(w, o, "--config", str(w.bad / "seed_negative.yaml")),
            r"seed must be >= 0 and <= 4294967295, got -4"),
        "prepare-negative-counts-without-tree": (
            lambda w, o: ["prepare", "--table", str(w.bad / "negative.biom"), "--metadata",
                          str(w.md), "--metadata-column", "target", "--output-dir", str(o)],
            r"negative\.biom has 1 counts that are negative; the first is -3 for sample S01, "
            r"feature .*…\. Counts must be >= 0"),
        "prepare-nan-count": (
            lambda w, o: ["prepare", "--table", str(w.bad / "nan_count.biom"), "--metadata",
                          str(w.md), "--metadata-column", "target", "--output-dir", str(o)],
            r"nan_count\.biom has 1 counts that are not finite \(NaN or infinite\)"),
        "prepare-fractional-counts": (
            lambda w, o: ["prepare", "--table", str(w.bad / "fraction.biom"), "--metadata",
                          str(w.md), "--metadata-column", "target", "--output-dir", str(o)],
            r"1 counts that are not a whole number; the first is 2\.5 .*"
            r"--allow-fractional-counts"),
        "prepare-negative-branch-length": (
            lambda w, o: _prepare(w, o, "--tree", str(w.bad / "negative_branch.nwk")),
            r"negative_branch\.nwk has a branch length of -0\.5 above .*; branch lengths must "
            r"be finite and >= 0"),
        "prepare-nan-branch-length": (
            lambda w, o: _prepare(w, o, "--tree", str(w.bad / "nan_branch.nwk")),
            r"nan_branch\.nwk has a branch length of nan"),
        "prepare-malformed-newick": (
            lambda w, o: _prepare(w, o, "--tree", str(w.bad / "malformed.nwk")),
            r"malformed\.nwk is not a valid Newick tree \(.*\)\. Pass a \.nwk file"),
        "prepare-object-dtype-matrix": (
            lambda w, o: _prepare(w, o, "--distance-matrix", str(w.bad / "object_dm.npy")),
            r"object_dm\.npy is not a numeric \.npy array"),
        "prepare-asymmetric-matrix": (
            lambda w, o: _prepare(w, o, "--distance-matrix", str(w.bad / "asymmetric.npy")),
            r"asymmetric\.npy is not a distance matrix: .* \(not symmetric\)"),
        "prepare-nonzero-diagonal": (
            lambda w, o: _prepare(w, o, "--distance-matrix", str(w.bad / "diagonal.npy")),
            r"the entry for S01, S01 \(1\) is a non-zero diagonal entry"),
        "prepare-negative-distances": (
            lambda w, o: _prepare(w, o, "--distance-matrix", str(w.bad / "negative_dm.npy")),
            r"negative_dm\.npy is not a distance matrix: .* is negative"),
        "prepare-nan-distances": (
            lambda w, o: _prepare(w, o, "--distance-matrix", str(w.bad / "nan_dm.npy")),
            r"nan_dm\.npy is not a distance matrix: .* is not finite"),
        "prepare-max-ambiguous-nan": (
            lambda w, o: _prepare(w, o, "--max-ambiguous-fraction", "nan"),
            r"--max-ambiguous-fraction must be a finite number, got nan"),
        "split-val-fraction-inf": (
            lambda w, o: ["split", "--metadata", str(w.md), "--val-fraction", "inf",
                          "--output-dir", str(o)],
            r"--val-fraction must be a finite number, got inf"),
        "rf-baseline-max-features-inf": (
            lambda w, o: _rf(w, o, "--max-features", "inf"),
            r"--max-features must be sqrt, log2, a fraction in \(0, 1\] or a count"),
        "rf-baseline-n-jobs-zero": (lambda w, o: _rf(w, o, "--n-jobs", "0"),
                                    r"n_jobs \(--n-jobs\) must be a positive count"),
        "predict-checkpoint-format-text": (
            lambda w, o: _predict(w, o, w.bad / "format_text.pt"),
            r"format_text\.pt has an unexpected checkpoint format field \('1; drop'"),
        "predict-checkpoint-format-float": (
            lambda w, o: _predict(w, o, w.bad / "format_float.pt"),
            r"format_float\.pt has an unexpected checkpoint format field \('1\.5'"),
        "train-resume-checkpoint-epoch-text": (
            lambda w, o: _train(w, o, *TINY, "--resume-from", str(w.bad / "epoch_text.pt")),
            r"epoch_text\.pt: checkpoint field 'epoch' must be a whole number >= 0, got 'x'"),
        "train-resume-checkpoint-best-nan": (
            lambda w, o: _train(w, o, *TINY, "--resume-from", str(w.bad / "best_nan.pt")),
            r"best_nan\.pt: checkpoint field 'best_metric' must be a number or null"),
        "train-resume-checkpoint-rng-garbage": (
            lambda w, o: _train(w, o, *TINY, "--resume-from", str(w.bad / "rng_garbage.pt")),
            r"checkpoint field 'rng_state' must be the random-number state aam writes"),
        "predict-checkpoint-vocab-garbage": (
            lambda w, o: _predict(w, o, w.bad / "vocab_garbage.pt"),
            r"checkpoint field 'categorical_vocab' must be a mapping of column to"),
        "predict-checkpoint-transform-garbage": (
            lambda w, o: _predict(w, o, w.bad / "transform_garbage.pt"),
            r"checkpoint field 'target_transform' must be a fitted target transform"),
        "train-resume-mismatched-weights": (
            lambda w, o: _train(w, o, *TINY, "--resume-from", str(w.bad / "mismatched.pt")),
            r"the --resume-from checkpoint's weights do not fit this model \(.*size mismatch"),
        "train-resume-checkpoint-other-kind": (
            lambda w, o: _train(w, o, *TINY, "--resume-from", str(w.bad / "kind_other.pt")),
            r"kind_other\.pt has an unexpected checkpoint kind or config \(kind 'forest'"),
    },
    "sample-ids": {
        "rf-baseline-overlapping-lists": (
            lambda w, o: _rf_lists(w, o, "train_a.txt", "val_overlap.txt"),
            r"2 \(first 2: S15, S16\) samples are in both --train-samples .*train_a\.txt and "
            r"--val-samples .*val_overlap\.txt"),
        "pretrain-overlapping-lists": (
            lambda w, o: _pretrain(w, o, *TINY, *_lists(w, "train_a.txt", "val_overlap.txt")),
            r"samples are in both --train-samples"),
        "train-overlapping-lists": (
            lambda w, o: _train(w, o, *TINY, *_lists(w, "train_a.txt", "val_overlap.txt")),
            r"samples are in both --train-samples"),
        "rf-baseline-unknown-val-sample": (
            lambda w, o: _rf_lists(w, o, "train_a.txt", "val_unknown.txt"),
            r"1 samples in --val-samples .*val_unknown\.txt are not in the prepared table "
            r"\(first 1: GHOST\)"),
        "rf-baseline-unknown-test-sample": (
            lambda w, o: _rf_lists(w, o, "train_a.txt", "val_ok.txt", "--test-samples",
                                   str(w.bad / "val_unknown.txt")),
            r"1 samples in --test-samples .*val_unknown\.txt are not in the prepared table"),
        "train-duplicate-in-list": (
            lambda w, o: _train(w, o, *TINY, *_lists(w, "dup.txt", "val_ok.txt")),
            r"dup\.txt lists 1 \(first 1: S01\) sample IDs more than once"),
        "predict-duplicate-in-samples": (
            lambda w, o: _predict(w, o, w.model, "--samples", str(w.bad / "dup.txt")),
            r"dup\.txt lists 1 \(first 1: S01\) sample IDs more than once"),
        "rf-baseline-duplicate-in-list": (
            lambda w, o: _rf_lists(w, o, "dup.txt", "val_ok.txt"),
            r"dup\.txt lists 1 \(first 1: S01\) sample IDs more than once"),
        "pretrain-tab-in-sample-id": (
            lambda w, o: _pretrain(w, o, *TINY, *_lists(w, "tab.txt", "val_ok.txt")),
            r"tab\.txt line 1 has a sample ID with a control character: 'S01\\tS02'"),
        "predict-long-unknown-id-is-shortened": (
            lambda w, o: _predict(w, o, w.model, "--samples", str(w.bad / "long_unknown.txt")),
            r"not in the prepared table \(first 1: ACGTACGTACGTACGTACGT…\)"),
        "train-binary-sample-list": (
            lambda w, o: _train(w, o, *TINY, *_lists(w, "binary.txt", "val_ok.txt")),
            r"binary\.txt is not a UTF-8 text sample list"),
        "prepare-table-ids-equal-after-stripping": (
            lambda w, o: ["prepare", "--table", str(w.bad / "near_duplicate.biom"), "--metadata",
                          str(w.md), "--metadata-column", "target", "--output-dir", str(o)],
            r"near_duplicate\.biom \(sample IDs\) lists 1 \(first 1: S01\) sample IDs more "
            r"than once"),
    },
    "resources": {
        "prepare-qza-zip-bomb": (
            lambda w, o: ["prepare", "--table", str(w.bad / "bomb.qza"), "--metadata", str(w.md),
                          "--metadata-column", "target", "--output-dir", str(o)],
            r"bomb\.qza: member u/data/feature-table\.biom expands \d+ times \(limit 200, "
            r"--max-archive-ratio\); it looks like a zip bomb"),
        "prepare-qza-member-over-size-limit": (
            lambda w, o: ["prepare", "--table", str(w.bad / "bomb.qza"), "--metadata", str(w.md),
                          "--metadata-column", "target", "--max-archive-bytes", "1000000",
                          "--output-dir", str(o)],
            r"member u/data/feature-table\.biom expands to 16777216 bytes \(limit 1000000, "
            r"--max-archive-bytes"),
        "predict-checkpoint-sizes-over-limit": (
            lambda w, o: _predict(w, o, w.bad / "huge_sizes.pt"),
            r"huge_sizes\.pt: model sizes \(embedding_dim 8192, .*\) would need "
            r"about \d+ parameters, more than its \d+ stored weights"),
        "train-model-sizes-over-limit": (
            lambda w, o: _train(w, o, *TINY, "--embedding-dim", "1048576", "--attention-heads",
                                "2"),
            r"the model settings: model sizes \(embedding_dim 1048576, .*\) would need about "
            r"\d+ parameters, more than the limit 4000000000"),
    },
}
RELIABILITY_CASES = {case: spec for group in RELIABILITY.values() for case, spec in group.items()}


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", sorted(RELIABILITY_CASES) + sorted(CASES))
def test_every_case_is_one_line_and_leaves_the_output_folder_as_it_was(case, w, tmp_path,
                                                                       capsys):
    """Every case of the catalogue, into an existing output folder (holding a file of an earlier
    run): exit 2, no traceback, a last line under 300 characters, the folder unchanged to the
    byte."""
    build, pattern = RELIABILITY_CASES.get(case) or CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("from an earlier run\n")
    before = _snapshot(out)
    capsys.readouterr()
    argv = build(w, out)
    try:
        code = aam_main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(last) < 300, last
    assert last.startswith(f"aam {argv[0]}: error: "), last
    assert re.search(pattern, last), last
    assert _snapshot(out) == before
    assert not _leftovers(w.root) and not _leftovers(tmp_path)


def test_fractional_counts_are_accepted_with_the_flag_and_a_warning(w, tmp_path, capsys):
    out = tmp_path / "prep"
    assert aam_main(["prepare", "--table", str(w.bad / "fraction.biom"), "--metadata",
                     str(w.md), "--metadata-column", "target", "--allow-fractional-counts",
                     "--output-dir", str(out)]) == 0
    assert "1 fractional counts; used as they are" in capsys.readouterr().err
    assert (out / "prepare.json").is_file()


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_no_output(case, w, tmp_path, capsys):
    build, pattern = CASES[case]
    out = tmp_path / "out"
    capsys.readouterr()
    argv = build(w, out)
    code = aam_main(argv)
    err = [line for line in capsys.readouterr().err.splitlines()
           if " INFO " not in line and " WARNING " not in line]
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith(f"aam {argv[0]}: error: "), err[0]
    assert "Traceback" not in err[0]
    assert re.search(pattern, err[0]), err[0]
    assert not out.exists(), sorted(out.rglob("*"))
    assert not _leftovers(w.root) and not _leftovers(tmp_path)


def test_unseen_categories_at_predict_warn_and_name_the_values(w, tmp_path, capsys):
    out = tmp_path / "predictions.tsv"
    code = aam_main(["predict", "--model", str(w.model), "--data-dir", str(w.prep),
                     "--metadata", str(w.unseen_md), "--output", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0 and out.is_file()
    assert "WARNING column 'category': 1 (first 1: site-zzz) unseen categories" in err
    assert len(pd.read_csv(out, sep="\t")) == 24


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores chmod 0o500, so the folder stays "
                                                "writable; the output-under-a-file case covers "
                                                "unwritable outputs for root")
def test_read_only_output_folder_is_one_line(w, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = aam_main(_prepare(w, locked / "out"))
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "permission denied. Choose a writable output folder" in err
    assert not (locked / "out").exists()


def test_debug_shows_the_full_exception(w, tmp_path):
    with pytest.raises(InputError, match="must be even and at least 2"):
        aam_main(_pretrain(w, tmp_path / "o", "--batch-size", "7", "--debug"))


@pytest.mark.parametrize("case", ["pretrain-odd-batch-size", "predict-encoder-checkpoint"])
def test_real_process_exits_2_without_traceback(case, w, tmp_path):
    build, pattern = CASES[case]
    argv = build(w, tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "aam.cli", *argv], capture_output=True,
                          text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1 and re.search(pattern, errors[0])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("pretrain:\n  epochz: 3\n", "give `aam pretrain` flags it refuses: unrecognized "
                                 "arguments: --epochz 3"),
    ("split:\n  foldz: 3\n", "unknown config key 'foldz' in section 'split' (did you mean "
                              "'folds'?)"),
    ("model:\n  embedding_dim: big\n", "config key model.embedding_dim: 'big' is not of type "
                                        "'integer'"),
])
def test_workflow_config_schema_rejects_bad_keys_in_a_dry_run(text, message, tmp_path):
    """Snakemake validates --configfile against workflow/schemas/config.schema.yaml, and the keys
    of the sections that are `aam` flags with that command's parser, before planning any job; it
    exits 1 (its own convention) and names the key."""
    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "config", tmp_path / "config")
    (tmp_path / "bad.yaml").write_text(text)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(repo / "workflow" / "Snakefile"),
         "-d", str(tmp_path), "-n", "--configfile", "bad.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_train_with_a_config_keeps_the_target_column_of_prepare_json(w, tmp_path):
    """`aam train --config x.yaml` used to drop prepare.json's target and blame a column ''."""
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 1\n")
    out = tmp_path / "run"
    assert aam_main(_train(w, out, *TINY, "--config", str(config))) == 0
    assert "target_column: target" in (out / "config.resolved.yaml").read_text()
