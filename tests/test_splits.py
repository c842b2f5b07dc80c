"""Sample splits: groups never straddle sides, k-fold covers every sample once, files round-trip."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aam.cli.split import main
from aam.data.metadata import read_metadata
from aam.data.simulate import SimulationConfig, simulate
from aam.data.splits import SplitConfig, split_metadata, split_samples, write_splits
from aam.errors import InputError
from conftest import shared_dataset


@pytest.fixture(scope="module")
def metadata():
    """Simulator-like metadata: 60 samples, 15 subjects, 3 categories constant within subject."""
    return simulate(SimulationConfig(n_samples=60, n_asvs=20)).metadata


def _groups_of(ids, metadata, column):
    return set(metadata.loc[list(ids), column])


def _assert_groups_disjoint(folds, metadata, column):
    for fold in folds:
        train, val, test = (_groups_of(side, metadata, column)
                            for side in (fold.train, fold.val, fold.test))
        assert not train & val and not train & test
        if fold.test != fold.val:
            assert not val & test


def test_grouped_kfold_keeps_subjects_together_and_covers_every_sample_once(metadata):
    cfg = SplitConfig(folds=4, test_fraction=0.2, group_by="subject", seed=3)
    folds = split_metadata(metadata, cfg)
    assert len(folds) == 4
    _assert_groups_disjoint(folds, metadata, "subject")
    test = folds[0].test
    assert all(fold.test == test for fold in folds), "the test set is fixed across folds"
    val_all = [sid for fold in folds for sid in fold.val]
    assert sorted(val_all) == sorted(set(metadata.index) - set(test))
    for fold in folds:
        assert sorted(fold.train + fold.val + fold.test) == sorted(metadata.index)


def test_ibd_subjects_never_straddle_sides():
    path = shared_dataset("ibd-2538") / "sample-metadata.tsv"
    meta = read_metadata(path)
    raw_ids = {line.split("\t")[0] for line in path.read_text().splitlines()[1:]}
    for cfg in (SplitConfig(group_by="host_subject_id", val_fraction=0.25, seed=1),
                SplitConfig(folds=5, group_by="host_subject_id", test_fraction=0.2)):
        folds = split_metadata(meta, cfg, source=str(path))
        _assert_groups_disjoint(folds, meta, "host_subject_id")
        sides = set(folds[0].train) | set(folds[0].val) | set(folds[0].test)
        assert sides == raw_ids, "IDs are kept as written (2538.1000100 stays a string)"


def test_holdout_sizes_and_test_equals_val_without_test_fraction():
    ids = [f"s{i}" for i in range(50)]
    (fold,) = split_samples(ids, SplitConfig(val_fraction=0.2, seed=0))
    assert len(fold.val) == 10 and len(fold.train) == 40
    assert fold.test == fold.val
    assert fold.train == [s for s in ids if s not in set(fold.val)], "input order is kept"


def test_same_seed_same_split_and_other_seed_differs():
    ids = [f"s{i}" for i in range(40)]
    cfg = SplitConfig(folds=5, seed=11)
    assert split_samples(ids, cfg) == split_samples(ids, cfg)
    assert split_samples(ids, cfg) != split_samples(ids, SplitConfig(folds=5, seed=12))


@pytest.mark.parametrize("folds", [None, 4])
def test_stratified_split_keeps_class_proportions(folds):
    ids = [f"s{i}" for i in range(80)]
    strata = ["a"] * 48 + ["b"] * 24 + ["c"] * 8  # 60% / 30% / 10%
    label = dict(zip(ids, strata))
    cfg = SplitConfig(folds=folds, val_fraction=0.25, stratify_by="cls", seed=2)
    for fold in split_samples(ids, cfg, strata=strata):
        for side in (fold.train, fold.val):
            shares = pd.Series([label[s] for s in side]).value_counts(normalize=True)
            assert abs(shares["a"] - 0.6) < 0.06 and abs(shares["c"] - 0.1) < 0.06


def test_written_files_round_trip(metadata, tmp_path):
    cfg = SplitConfig(folds=3, test_fraction=0.2, group_by="subject")
    folds = split_metadata(metadata, cfg)
    summary = json.loads(write_splits(folds, cfg, tmp_path).read_text())
    for k, fold in enumerate(folds):
        for side in ("train", "val", "test"):
            lines = (tmp_path / f"fold~{k}" / f"{side}_samples.txt").read_text().splitlines()
            assert lines == getattr(fold, side)
    assert summary["n_folds"] == 3 and summary["config"]["group_by"] == "subject"
    assert summary["folds"][1]["val"] == len(folds[1].val) and not summary["test_is_val"]


def test_cli_writes_test_list_equal_to_val_list(tmp_path, capsys):
    meta = tmp_path / "metadata.tsv"
    meta.write_text("sample_id\tsubject\n" + "".join(f"2538.10{i:02d}0\tp{i % 5}\n"
                                                     for i in range(20)))
    out = tmp_path / "splits"
    assert main(["--metadata", str(meta), "--group-by", "subject", "--val-fraction", "0.4",
                 "--output-dir", str(out)]) == 0
    val = (out / "fold~0" / "val_samples.txt").read_text()
    assert (out / "fold~0" / "test_samples.txt").read_text() == val
    assert "2538.10000\n" in (out / "fold~0" / "train_samples.txt").read_text() + val
    assert "test_samples.txt repeats its val_samples.txt" in capsys.readouterr().err


def test_missing_group_column_lists_available_columns(metadata):
    with pytest.raises(InputError, match="group column 'host' not found.*Available columns: "
                                         "target, category, subject, batch"):
        split_metadata(metadata, SplitConfig(group_by="host"))


def test_missing_stratify_column(metadata):
    with pytest.raises(InputError, match="stratify column 'site' not found"):
        split_metadata(metadata, SplitConfig(stratify_by="site"))


def test_more_folds_than_groups_names_the_empty_fold(metadata):
    with pytest.raises(InputError, match="Fold 15 has an empty val side: 16 folds but only 15 "
                                         "groups.*--folds 15 or fewer"):
        split_metadata(metadata, SplitConfig(folds=16, group_by="subject"))


def test_val_fraction_too_small_for_the_groups(metadata):
    with pytest.raises(InputError, match=r"Fold 0 has an empty val side: --val-fraction 0.02 "
                                         r"of 15 groups rounds to 0"):
        split_metadata(metadata, SplitConfig(val_fraction=0.02, group_by="subject"))


def test_missing_group_values_are_named():
    meta = pd.DataFrame({"subject": ["a", "", "b", "b"]}, index=["s1", "s2", "s3", "s4"])
    with pytest.raises(InputError, match=r"group column 'subject' .* no value for 1 \(first 1: "
                                         r"s2\) samples"):
        split_metadata(meta, SplitConfig(group_by="subject"))


def test_single_member_class_cannot_be_stratified():
    with pytest.raises(InputError, match=r"at least 2 samples per class; 1 \(first 1: c=1\)"):
        split_samples(list("abcdefg"), SplitConfig(stratify_by="y"), strata=list("xxxyyyc"))


@pytest.mark.parametrize("kwargs, message", [
    ({"folds": 1}, "--folds must be >= 2 .* got 1"),
    ({"val_fraction": 1.5}, r"--val-fraction must be between 0 and 1 \(exclusive\), got 1.5"),
    ({"test_fraction": -0.1}, "--test-fraction must be >= 0 and < 1, got -0.1"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "leave no samples for training"),
])
def test_invalid_settings(kwargs, message):
    with pytest.raises(InputError, match=message):
        SplitConfig(**kwargs)


def test_grouped_stratified_split_keeps_subjects_whole_and_both_classes_on_every_side():
    """A subject-level class (a diagnosis) with few subjects: every fold's test and inner
    validation side holds both classes, and no subject is on two sides."""
    subjects = [f"p{i}" for i in range(14)]
    ids, groups, strata = [], [], []
    for i, subject in enumerate(subjects):
        for visit in range(3 + i % 3):
            ids.append(f"{subject}.v{visit}")
            groups.append(subject)
            strata.append("Crohns" if i < 9 else "Control")
    cfg = SplitConfig(folds=3, inner_val_fraction=0.2, group_by="subject", stratify_by="ibd")
    for fold in split_samples(ids, cfg, groups=groups, strata=strata):
        label = dict(zip(ids, strata))
        subject = dict(zip(ids, groups))
        for side in ("val", "test"):
            assert {label[s] for s in getattr(fold, side)} == {"Crohns", "Control"}, side
        sides = [{subject[s] for s in getattr(fold, side)} for side in ("train", "val", "test")]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


def test_grouped_stratified_split_refuses_a_subject_with_two_classes(tmp_path, capsys):
    meta = tmp_path / "m.tsv"
    rows = [f"s{i}\t{'a' if i < 4 else 'b'}\t{'x' if i % 2 else 'y'}" for i in range(8)]
    meta.write_text("sample_id\tsubject\tcls\n" + "\n".join(rows) + "\n")
    code = main(["--metadata", str(meta), "--group-by", "subject", "--stratify-by", "cls",
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "group a holds samples of 2 classes" in err and "(x, y;" in err
    assert not (tmp_path / "out").exists()


def test_inner_val_fraction_validates_on_training_groups_never_on_test():
    ids = [f"s{i}" for i in range(60)]
    groups = [f"g{i // 4}" for i in range(60)]
    group_of = dict(zip(ids, groups))
    folds = split_samples(ids, SplitConfig(folds=5, inner_val_fraction=0.2, seed=1), groups)
    tested = []
    for fold in folds:
        sides = [{group_of[s] for s in side} for side in (fold.train, fold.val, fold.test)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert sorted(fold.train + fold.val + fold.test) == sorted(ids)
        assert len(sides[1]) == 2 and len(sides[2]) == 3  # 20% of 12 training groups; 15 / 5
        tested += fold.test
    assert sorted(tested) == sorted(ids), "each sample is tested once across the folds"
