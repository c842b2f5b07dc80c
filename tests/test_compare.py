"""aam compare on fabricated results trees: table, verdicts, determinism, bad paths, run lists."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aam.cli.compare import main
from aam.errors import InputError
from aam.predictions import write_metrics, write_predictions
from aam.reports.runs import discover_runs, parse_run_path
from aam.reports.summary import CompareConfig, write_report

ABLATION = "categorical-fusion~cross-attention_freeze-base~true"


def fabricate(root, noise=None, folds=2, seeds=(0, 1), n=80):
    """results/finetune/<ablation>/fold~k/seed~s and results/rf/... with truth + N(0, sd)."""
    noise = noise or {f"finetune/{ABLATION}": 1.0, "finetune/categorical-fusion~add": 2.0,
                      "rf": 2.0}
    rng = np.random.default_rng(7)
    for fold in range(folds):
        ids = [f"f{fold}s{i:03d}" for i in range(n)]
        truth = rng.normal(10, 3, n)
        for model, sd in noise.items():
            for seed in seeds:
                run = root / model / f"fold~{fold}" / f"seed~{seed}"
                write_predictions(run / "predictions.tsv", ids, truth + rng.normal(0, sd, n),
                                  actual=truth)
                write_metrics(run / "metrics.json", {"task": "regression", "seed": seed,
                                                     "fold": fold,
                                                     "config": {"metadata_column": "ph"}})


def test_parse_run_path_reads_model_params_fold_and_seed():
    parsed = parse_run_path(Path(f"finetune/{ABLATION}/fold~3/seed~2"))
    assert parsed == (ABLATION, {"categorical-fusion": "cross-attention",
                                  "freeze-base": "true"}, 3, 2)
    assert parse_run_path(Path("rf/fold~0/seed~1")) == ("rf", {}, 0, 1)
    with pytest.raises(InputError,
                       match="'categorical-fusion~cross_attention' .* not key~value pairs"):
        parse_run_path(Path("finetune/categorical-fusion~cross_attention/fold~0"))


def test_comparison_ranks_models_and_finds_the_known_difference(tmp_path):
    fabricate(tmp_path / "results")
    table = write_report(CompareConfig(str(tmp_path / "results"), str(tmp_path / "out"),
                                       n_bootstrap=300, png=False))
    assert table["model"].tolist() == [ABLATION, "categorical-fusion~add", "rf"]
    best = table.iloc[0]
    assert (best["n_runs"], best["n_folds"], best["n_seeds"]) == (4, 2, 2)
    # MAE difference of N(0,1) vs N(0,2) noise is -sqrt(2/pi) = -0.80
    assert best["mae_ci_low"] < -0.8 < best["mae_ci_high"] < 0
    same = table.iloc[1]
    assert same["r2_ci_low"] < 0 < same["r2_ci_high"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    # readable labels derived from the settings stand in for the folder names
    assert table["label"].tolist() == ["cross-attention, frozen", "add", "random forest"]
    assert "**cross-attention, frozen** beats RF by" in summary
    assert "**add** is indistinguishable from RF on R²" in summary
    assert "**random forest** (the baseline)" in summary
    assert "over 2 fold(s) x 2 seed(s)" in summary
    assert summary.index("cross-attention, frozen") < summary.index("**add**")
    runs = pd.read_csv(tmp_path / "out" / "runs.tsv", sep="\t")
    assert len(runs) == 12 and set(runs["fold"]) == {0, 1}
    assert (tmp_path / "out" / "predicted_vs_actual.svg").stat().st_size > 5000


def test_rerunning_compare_gives_byte_identical_tables(tmp_path):
    fabricate(tmp_path / "results", folds=1, seeds=(0,), n=30)
    outputs = []
    for name in ("a", "b"):
        code = main(["--results-dir", str(tmp_path / "results"), "--output-dir",
                     str(tmp_path / name), "--n-bootstrap", "100", "--no-figures"])
        assert code == 0
        outputs.append([(tmp_path / name / f).read_bytes() for f in
                        ("comparison.tsv", "runs.tsv", "summary.md", "report_section.rst")])
    assert outputs[0] == outputs[1]


def test_unparseable_run_folder_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    fabricate(tmp_path / "results", folds=1, seeds=(0,), n=20)
    write_predictions(tmp_path / "results" / "finetune" / "categorical-fusion~gmu_old" /
                      "predictions.tsv", ["a"], [1.0], actual=[1.0])
    with caplog.at_level(logging.WARNING):
        runs = discover_runs(tmp_path / "results")
    assert "categorical-fusion~gmu_old" in caplog.text
    assert {r.model for r in runs} == {ABLATION, "categorical-fusion~add", "rf"}


def test_empty_tree_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    code = main(["--results-dir", str(tmp_path / "results"), "--output-dir", str(tmp_path / "o")])
    assert code == 2
    assert "no predictions.tsv with a parseable path" in capsys.readouterr().err


def test_differing_actual_values_are_reported(tmp_path):
    fabricate(tmp_path / "results", noise={"finetune/categorical-fusion~add": 1.0, "rf": 1.0},
              folds=1, seeds=(0,), n=10)
    path = tmp_path / "results" / "rf" / "fold~0" / "seed~0" / "predictions.tsv"
    frame = pd.read_csv(path, sep="\t", dtype={"sample_id": str})
    write_predictions(path, frame["sample_id"], frame["prediction"], actual=frame["actual"] * 2)
    with pytest.raises(InputError, match="actual values differ between .* for 10"):
        write_report(CompareConfig(str(tmp_path / "results"), str(tmp_path / "o"),
                                   n_bootstrap=10, png=False))


def test_summary_cautions_when_no_model_beats_the_mean(tmp_path):
    # noise sd 4 and 5 around a truth of sd 3: every model is worse than the target's mean
    fabricate(tmp_path / "bad", noise={f"finetune/{ABLATION}": 4.0, "rf": 5.0}, folds=1)
    write_report(CompareConfig(str(tmp_path / "bad"), str(tmp_path / "out-bad"),
                               n_bootstrap=50, png=False, figures=False))
    assert "Caution: no model explains this target" in (tmp_path / "out-bad" /
                                                        "summary.md").read_text()
    fabricate(tmp_path / "good", folds=1)
    write_report(CompareConfig(str(tmp_path / "good"), str(tmp_path / "out-good"),
                               n_bootstrap=50, png=False, figures=False))
    assert "Caution" not in (tmp_path / "out-good" / "summary.md").read_text()


def test_run_list_compares_only_the_listed_runs(tmp_path, capsys):
    fabricate(tmp_path / "results", folds=1, n=30)  # ABLATION, ...~add and rf, seeds 0 and 1
    listed = tmp_path / "run_list.txt"
    listed.write_text(f"# runs the config defines\n"
                      f"{tmp_path}/results/finetune/{ABLATION}/fold~0/seed~0/predictions.tsv\n"
                      f"{tmp_path}/results/finetune/{ABLATION}/fold~0/seed~1\n\n"
                      f"{tmp_path}/results/rf/fold~0/seed~0/predictions.tsv\n")
    code = main(["--results-dir", str(tmp_path / "results"), "--run-list", str(listed),
                 "--output-dir", str(tmp_path / "out"), "--n-bootstrap", "50", "--no-figures"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "out" / "comparison.tsv", sep="\t")
    assert table["model"].tolist() == [ABLATION, "rf"]
    assert table["n_runs"].tolist() == [2, 1]
    runs = pd.read_csv(tmp_path / "out" / "runs.tsv", sep="\t")
    assert sorted(zip(runs["model"], runs["seed"])) == [(ABLATION, 0), (ABLATION, 1), ("rf", 0)]
    assert "categorical-fusion~add" not in (tmp_path / "out" / "summary.md").read_text()


def _bad_lists(root):
    """{case: (run-list contents or None for no file, words the error must contain)}."""
    run = f"{root}/results/rf/fold~0/seed~0"
    return {
        "no-list": (None, r"run list not found: .*run_list\.txt"),
        "not-text": (b"\xff\xfe\x00binary",
                     r"cannot read the run list .*run_list\.txt \(not UTF-8"),
        "empty": ("# nothing yet\n\n", r"the run list .*run_list\.txt names no run"),
        "missing-run": (f"{run}\n{root}/results/rf/fold~9/seed~0\n",
                        r"runs named in .*run_list\.txt but not found: 1 \(first 1: "
                        r"/\S*/results/rf/fold~9/seed~0\)\. Finish those runs"),
        "twice": (f"{run}\n{run}/predictions.tsv\n",
                  r"runs named twice in .*run_list\.txt: 1 \(first 1: "),
        "outside": (f"{run}\n{root}/elsewhere/rf/fold~0/seed~0\n",
                    r"elsewhere/rf/fold~0/seed~0/predictions\.tsv is not inside the results "
                    r"folder"),
    }


@pytest.mark.parametrize("case", sorted(_bad_lists("")))
def test_bad_run_list_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    fabricate(tmp_path / "results", folds=1, seeds=(0,), n=10)
    fabricate(tmp_path / "elsewhere", folds=1, seeds=(0,), n=10)
    contents, pattern = _bad_lists(tmp_path)[case]
    listed = tmp_path / "run_list.txt"
    if contents is not None:
        listed.write_bytes(contents if isinstance(contents, bytes) else contents.encode())
    capsys.readouterr()
    code = main(["--results-dir", str(tmp_path / "results"), "--run-list", str(listed),
                 "--output-dir", str(tmp_path / "out"), "--n-bootstrap", "10"])
    err = [line for line in capsys.readouterr().err.splitlines() if " INFO " not in line]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("aam compare: error: "), err
    assert re.search(pattern, err[0]), err[0]
    assert not (tmp_path / "out").exists()


def test_a_folder_given_as_run_list_is_an_input_error_naming_it(tmp_path):
    fabricate(tmp_path / "results", folds=1, seeds=(0,), n=10)
    (tmp_path / "lists").mkdir()
    with pytest.raises(InputError, match=r"cannot read the run list .*lists \(Is a directory\)"):
        write_report(CompareConfig(str(tmp_path / "results"), str(tmp_path / "o"),
                                   run_list=str(tmp_path / "lists")))
    assert not (tmp_path / "o").exists()


def test_summary_says_whether_test_samples_chose_the_best_epoch(tmp_path):
    fabricate(tmp_path / "runs", folds=1, seeds=(0,))
    run = tmp_path / "runs" / "finetune" / ABLATION / "fold~0" / "seed~0"
    scored = pd.read_csv(run / "predictions.tsv", sep="\t")["sample_id"].tolist()
    (run / "val_samples.txt").write_text("inner-a\ninner-b\n")
    write_report(CompareConfig(str(tmp_path / "runs"), str(tmp_path / "clean"), n_bootstrap=20,
                               png=False, figures=False))
    assert "validation samples disjoint from the test samples" in (
        tmp_path / "clean" / "summary.md").read_text()
    (run / "val_samples.txt").write_text("\n".join(scored[:5]) + "\n")
    write_report(CompareConfig(str(tmp_path / "runs"), str(tmp_path / "leaky"), n_bootstrap=20,
                               png=False, figures=False))
    assert "in 1 of 1 fine-tuned runs the validation samples" in (
        tmp_path / "leaky" / "summary.md").read_text()


@pytest.mark.parametrize("margin, words", [
    (1.0, "lower by more than 1 standard error of the per-subject difference"),
    (0.0, "the lowest validation loss chose between it and the fine-tuned epochs")])
def test_summary_states_the_margin_a_fine_tuned_epoch_had_to_clear(tmp_path, margin, words):
    fabricate(tmp_path / "runs", folds=1, seeds=(0,))
    run = tmp_path / "runs" / "finetune" / ABLATION / "fold~0" / "seed~0"
    (run / "val_samples.txt").write_text("inner-a\ninner-b\n")
    saved = json.loads((run / "metrics.json").read_text())
    saved.update(abundance_head_fit={"penalty": 1.0}, config={"selection_se": margin})
    (run / "metrics.json").write_text(json.dumps(saved))
    write_report(CompareConfig(str(tmp_path / "runs"), str(tmp_path / "out"), n_bootstrap=20,
                               png=False, figures=False))
    assert words in (tmp_path / "out" / "summary.md").read_text()
