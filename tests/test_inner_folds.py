"""``aam train --selection-folds K``: folds of whole subjects, the pooled margin rule, and the
model it writes (the start fitted on every given sample, or fine-tuned for the chosen epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aam.cli.__main__ import main as aam_main
from aam.errors import InputError
from aam.training.checkpoint import load_checkpoint
from aam.training.inner_folds import assign_folds, choose_epoch, pool_losses
from aam.training.preemption import EXIT_PREEMPTED, TEST_HOOK

TINY = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--batch-size", "8", "--token-limit", "16", "--device", "cpu", "--epochs", "2",
        "--lr", "3e-3", "--attention-path"]


def _train(data: Path, out: Path, *flags: str) -> int:
    return aam_main(["train", "--data-dir", str(data), "--output-dir", str(out), *TINY, *flags])


def _groups(sizes: dict[str, int]) -> dict[str, str]:
    return {f"{subject}-{i}": subject for subject, n in sizes.items() for i in range(n)}


def test_folds_keep_subjects_whole_cover_every_sample_once_and_balance_subjects():
    groups = _groups({"A": 5, "B": 1, "C": 3, "D": 2, "E": 2, "F": 4, "G": 1})
    folds = assign_folds(groups, 3, seed=7)
    samples = [s for fold in folds for s in fold]
    assert sorted(samples) == sorted(groups)  # everyone, once
    subjects = [{groups[s] for s in fold} for fold in folds]
    assert all(a.isdisjoint(b) for i, a in enumerate(subjects) for b in subjects[i + 1:])
    assert sorted(len(s) for s in subjects) == [2, 2, 3]  # 7 subjects: differ by at most one
    assert assign_folds(groups, 3, seed=7) == folds  # seeded: the same folds again
    others = {tuple(map(tuple, assign_folds(groups, 3, seed=s))) for s in range(20)}
    assert len(others) > 1  # the seed decides which subjects go together


def test_fewer_subjects_than_folds_names_both_counts():
    with pytest.raises(InputError, match=r"--selection-folds 4 needs at least 4 subjects, but "
                                         r"the 6 given samples hold 3 \(--group-by\)"):
        assign_folds(_groups({"A": 2, "B": 2, "C": 2}), 4, seed=0)


def test_a_fine_tuned_epoch_is_kept_only_beyond_the_margin_of_the_pooled_difference():
    start = {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0}
    steady = {"A": 0.9, "B": 0.9, "C": 0.9, "D": 0.9}  # -0.1 for every subject: SE 0
    lucky = {"A": 0.0, "B": 1.0, "C": 1.0, "D": 1.0}  # -0.25 pooled, all of it from A
    # the lucky epoch has the lowest pooled loss; its paired SE is std(-1, 0, 0, 0) / 2 = 0.25
    strict = choose_epoch([start, steady, lucky], selection_se=1.0)
    assert (strict.lowest_epoch, strict.epoch, strict.decision) == (2, 0, "fitted start")
    assert strict.pooled_loss == pytest.approx([1.0, 0.9, 0.75])
    assert (strict.difference, strict.standard_error) == pytest.approx((-0.25, 0.25))
    loose = choose_epoch([start, steady, lucky], selection_se=0.5)  # 0.25 > 0.5 x 0.25
    assert (loose.epoch, loose.decision) == (2, "fine-tuned")
    assert choose_epoch([start, steady], selection_se=1.0).epoch == 1  # any gain beats SE 0
    assert choose_epoch([start, start], selection_se=0.0).epoch == 0  # a tie keeps the start
    assert choose_epoch([steady, start], selection_se=0.0).epoch == 0  # the start is lowest


def test_pooled_losses_average_each_subjects_samples_then_each_folds_subjects():
    units = {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    folds = [{0: {"a1": 1.0, "a2": 3.0, "b1": 4.0}, 1: {"a1": 0.0, "a2": 2.0, "b1": 4.0}},
             {0: {"c1": 5.0}, 1: {"c1": 1.0}, 2: {"c1": 0.0}}]  # epoch 2: one fold only
    per_epoch, per_fold = pool_losses(folds, units)
    assert per_epoch == [{"A": 2.0, "B": 4.0, "C": 5.0}, {"A": 1.0, "B": 4.0, "C": 1.0}]
    assert per_fold == [[3.0, 2.5], [5.0, 1.0]]


def test_selection_folds_writes_the_model_its_pooled_losses_chose(simulated_prepared, tmp_path):
    """3 inner folds of the 8 simulated subjects: the record's decision follows from its pooled
    losses, model.pt was trained for exactly the chosen epochs, val_predictions.tsv holds every
    sample's out-of-fold prediction once, and aam predict reads the model."""
    runs = {}
    for name, margin in (("any-gain", "0"), ("strict", "1e6")):
        out = tmp_path / name
        assert _train(simulated_prepared, out, "--group-by", "subject", "--selection-folds",
                      "3", "--selection-se", margin) == 0
        runs[name] = out
        metrics = json.loads((out / "metrics.json").read_text())
        record = metrics["selection_folds"]
        assert record["k"] == 3 and record["n_samples"] == 32 and record["n_subjects"] == 8
        subjects = [s for fold in record["subjects"] for s in fold]
        assert sorted(subjects) == sorted(set(subjects)) and len(subjects) == 8
        assert len(record["fold_losses"]) == 3
        assert all(len(losses) == 3 for losses in record["fold_losses"])  # epochs 0, 1, 2
        pooled = record["pooled_loss"]
        assert record["lowest_epoch"] == int(np.argmin(pooled))
        assert record["difference"] == pytest.approx(pooled[record["lowest_epoch"]] - pooled[0])
        kept = -record["difference"] > float(margin) * record["standard_error"]
        assert record["chosen_epoch"] == (record["lowest_epoch"] if kept else 0)
        assert record["decision"] == ("fine-tuned" if record["chosen_epoch"] else "fitted start")
        assert metrics["best_epoch"] == metrics["epochs_run"] == record["chosen_epoch"]
        model = load_checkpoint(out / "model.pt", "predictor")
        steps_per_epoch = 4  # 32 samples in batches of 8
        assert model.epoch == record["chosen_epoch"]
        assert model.global_step == steps_per_epoch * record["chosen_epoch"]
        predictions = pd.read_csv(out / "val_predictions.tsv", sep="\t")
        assert sorted(predictions["sample_id"]) == sorted(
            (out / "train_samples.txt").read_text().split())
        assert len(predictions) == 32
        assert f"Decision: {record['decision']}, epoch {record['chosen_epoch']}" in (
            out / "model-card.md").read_text()
    assert json.loads((runs["strict"] / "metrics.json").read_text())["best_epoch"] == 0
    # the seeded simulator's folds gain from fine-tuning, so the fine-tuned branch ran too
    assert json.loads((runs["any-gain"] / "metrics.json").read_text())["best_epoch"] > 0, \
        "no fine-tuned epoch was chosen: raise --lr here so both branches stay covered"
    predicted = tmp_path / "predicted.tsv"
    assert aam_main(["predict", "--model", str(runs["any-gain"] / "model.pt"), "--data-dir",
                     str(simulated_prepared), "--output", str(predicted)]) == 0
    assert len(pd.read_csv(predicted, sep="\t")) == 32


@pytest.mark.parametrize("flags, message", [
    (["--selection-folds", "3"], "--selection-folds 3 needs --group-by SUBJECT_COLUMN"),
    (["--selection-folds", "9", "--group-by", "subject"],
     "--selection-folds 9 needs at least 9 subjects, but the 32 given samples hold 8"),
    (["--selection-folds", "3", "--group-by", "subject", "--no-attention-path"],
     "has no attention path to fine-tune"),
    (["--selection-folds", "-2"], "selection_folds must be >= 0, got -2"),
])
def test_bad_selection_settings_stop_with_one_line(flags, message, simulated_prepared,
                                                   tmp_path, capsys):
    assert _train(simulated_prepared, tmp_path / "run", *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_resume_from_is_refused_with_selection_folds(simulated_prepared, tmp_path, capsys):
    """A selection run keeps no resumable checkpoint; resuming its model.pt (whose config holds
    selection_folds) is refused, and so is adding --selection-folds to a plain run's resume."""
    chosen, plain = tmp_path / "chosen", tmp_path / "plain"
    assert _train(simulated_prepared, chosen, "--group-by", "subject", "--selection-folds",
                  "2", "--epochs", "1") == 0
    assert _train(simulated_prepared, plain, "--group-by", "subject", "--epochs", "1") == 0
    capsys.readouterr()
    assert _train(simulated_prepared, tmp_path / "again", "--resume-from",
                  str(chosen / "model.pt")) == 2
    assert "--resume-from cannot be combined with --selection-folds 2" in \
        capsys.readouterr().err
    assert _train(simulated_prepared, tmp_path / "more", "--selection-folds", "2",
                  "--resume-from", str(plain / "checkpoints" / "last.pt")) == 2
    assert "--selection-folds 2 differs from 0 in the checkpoint" in capsys.readouterr().err


def test_a_stop_signal_in_an_inner_fold_exits_75_and_writes_nothing(
        simulated_prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(TEST_HOOK, "1")  # SIGTERM after the first inner run's first step
    out = tmp_path / "run"
    assert _train(simulated_prepared, out, "--selection-folds", "2", "--group-by",
                  "subject") == EXIT_PREEMPTED
    err = capsys.readouterr().err
    assert "in epoch 1 after batch 1 of inner fold 1/2" in err and "start the selection over" \
        in err and "Traceback" not in err
    left = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert not {"model.pt", "metrics.json", "last.pt", "best.pt"} & set(left), left
