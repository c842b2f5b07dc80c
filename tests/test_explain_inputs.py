"""aam explain's user files, one validating reader each: ``--truth`` (truth.json of aam
simulate), ``--rf-importances`` (feature_importance.tsv of aam rf-baseline), ``--taxonomy`` and
the prepared folder's ``prepare.json``; plus the model checkpoint's kind and longer ASVs than the
model read. A bad file is one stderr line naming it, exit 2, and no output folder.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aam.cli.__main__ import main as aam_main
from aam.config import ModelConfig, PretrainConfig, to_dict
from aam.data.prepared import load_prepared
from aam.data.simulate import SimulationConfig, simulate, write_simulation
from aam.errors import InputError
from aam.explain.importances import read_rf_importances, shared_importances
from aam.explain.truth import signal_sequences
from finetune_fixtures import lazy_trainer, prepare_both_tasks

N_ASVS = 16  # prepare_both_tasks simulates 12 samples x 16 ASVs


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """The simulated folder, its regression preparation and a 1-epoch concat model."""
    root = prepare_both_tasks(tmp_path_factory.mktemp("explain-inputs"))
    run = lazy_trainer(root, {"concat": ("regression", {"fusion": "concat"})})("concat")[1]
    prepared = root / "prepared-regression"
    return {"root": root, "sim": root / "sim", "prepared": prepared, "model": run / "model.pt",
            "sequences": load_prepared(prepared).sequences}


def _argv(w, out: Path, *flags: str, data: Path | None = None, model: Path | None = None):
    return ["explain", "--model", str(model or w["model"]), "--data-dir",
            str(data or w["prepared"]), "--output-dir", str(out), *flags]


def _fails(argv: list[str], capsys) -> str:
    """Run ``argv``: exit 2, one error line, no traceback, no output; returns the line (the
    test matches it against its expected message)."""
    capsys.readouterr()
    code = aam_main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " INFO " not in line
             and " WARNING " not in line]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("aam explain: error: ") and len(lines[0]) < 300, lines[0]
    assert not Path(argv[argv.index("--output-dir") + 1]).exists()
    return lines[0]


def _truth(w, name: str, clades) -> Path:
    """A truth.json beside the simulated table.biom with ``clades`` replaced (or raw bytes)."""
    path = w["sim"] / f"truth-{name}.json"
    if isinstance(clades, bytes):
        path.write_bytes(clades)
        return path
    truth = json.loads((w["sim"] / "truth.json").read_text())
    truth["clades"] = ([{"name": f"clade-{k}", "asv_index": index}
                        for k, index in enumerate(clades)] if isinstance(clades, list)
                       else clades)
    path.write_text(json.dumps(truth))
    return path


TRUTH_CASES = {
    "text-index": ([["a", 2]], r"truth-text-index\.json: clade clade-0 asv_index holds 'a', not "
                               r"a whole number"),
    "numeric-text-index": ([["3"]], r"asv_index holds '3', not a whole number"),
    "fractional-index": ([[1.5]], r"asv_index holds 1\.5, not a whole number"),
    "boolean-index": ([[True]], r"asv_index holds True, not a whole number"),
    "negative-index": ([[2, -1]], r"asv_index holds -1, a negative index; indices count ASVs "
                                  r"of table\.biom from 0 to 15"),
    "out-of-range-index": ([[1, 16]], r"asv_index holds 16, beyond the 16 ASVs of the "
                                      r"table\.biom beside it \(0 to 15\)"),
    "repeated-index": ([[1, 3, 1]], r"clade clade-0 asv_index lists ASV 1 twice; list each "
                                    r"signal ASV once"),
    "index-in-two-clades": ([[1, 2], [5, 2]], r"clade clade-1 asv_index lists ASV 2 twice, "
                                              r"already in clade clade-0"),
    "no-signal": ([[], []], r"names no signal ASV \(every clade's asv_index is empty\)"),
    "no-negatives": ([list(range(8)), list(range(8, 16))],
                     r"marks all 16 ASVs of .*table\.biom as signal; the AUROC needs ASVs "
                     r"without signal too"),
    "clades-not-a-list": ({"clade-0": [1]}, r"is not the truth\.json of aam simulate \(no "
                                            r"clades with asv_index\)"),
    "truncated": (b'{"clades": [{"name": "clade-0", "asv_index": [1, ', r"is truncated or not "
                                                                        r"UTF-8 JSON"),
    "binary": (b"\xff\xfe\x00\x01", r"is truncated or not UTF-8 JSON"),
    "empty-file": (b"", r"is truncated or not UTF-8 JSON"),
    "top-level-list": (b"[1, 2]", r"is not the truth\.json of aam simulate"),
}


@pytest.mark.parametrize("case", sorted(TRUTH_CASES))
def test_bad_truth_is_one_line(case, w, tmp_path, capsys):
    clades, pattern = TRUTH_CASES[case]
    path = _truth(w, case, clades)
    line = _fails(_argv(w, tmp_path / "out", "--truth", str(path)), capsys)
    assert re.search(pattern, line), line


def test_truth_of_another_simulation_is_refused(w, tmp_path, capsys):
    other = tmp_path / "other-sim"
    write_simulation(simulate(SimulationConfig(n_samples=12, n_asvs=16, seq_length=100,
                                               seed=9)), other)
    line = _fails(_argv(w, tmp_path / "out", "--truth", str(other / "truth.json")), capsys)
    assert re.search(r"none of the \d+ signal ASVs of .*truth\.json is an ASV of "
                     r".*prepared-regression \(the truth of another simulation\?\)", line), line


def test_valid_truth_is_read_whole(w):
    truth = json.loads((w["sim"] / "truth.json").read_text())
    index = {i for clade in truth["clades"] for i in clade["asv_index"]}
    signal = signal_sequences(w["sim"] / "truth.json")
    table = w["sequences"]  # prepare keeps every simulated ASV, in table order
    assert signal == {table[i].upper() for i in index} and 0 < len(signal) < N_ASVS


def _importances(w, name: str, rows) -> Path:
    path = w["root"] / f"importances-{name}.tsv"
    if isinstance(rows, bytes):
        path.write_bytes(rows)
    else:
        path.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows))
    return path


def _rf_rows(w, values=None):
    values = values if values is not None else np.linspace(1.0, 0.1, N_ASVS)
    return [("sequence", "importance")] + list(zip(w["sequences"], values))


RF_CASES = {
    "text-importance": (lambda w: _rf_rows(w)[:3] + [(w["sequences"][2], "high")]
                        + _rf_rows(w)[4:],
                        r"importances-text-importance\.tsv line 4: importance 'high' is not a "
                        r"number \(1 such row\)\. Importances must be finite numbers"),
    "nan-importance": (lambda w: _rf_rows(w, ["nan"] * 2 + [0.5] * (N_ASVS - 2)),
                       r"line 2: importance 'nan' is empty or NaN \(2 such rows\)"),
    "empty-importance": (lambda w: _rf_rows(w, [0.5, ""] + [0.5] * (N_ASVS - 2)),
                         r"line 3: importance '' is empty or NaN"),
    "infinite-importance": (lambda w: _rf_rows(w, [0.5, "inf"] + [0.5] * (N_ASVS - 2)),
                            r"line 3: importance 'inf' is not finite"),
    "duplicate-sequence": (lambda w: _rf_rows(w) + [(w["sequences"][0], 0.05)],
                           r"lists sequence [ACGT]{20}… more than once \(lines 2, 18\)\. Keep one "
                           r"row per ASV"),
    "duplicate-in-lower-case": (lambda w: _rf_rows(w) + [(w["sequences"][3].lower(), 0.05)],
                                r"lists sequence [ACGT]{20}… more than once \(lines 5, 18\)"),
    "no-rows": (lambda w: [("sequence", "importance")], r"has no rows \(only a header\)"),
    "empty-file": (lambda w: b"", r"is not a readable TSV \(No columns to parse from file\)"),
    "binary": (lambda w: b"\xff\xfe\x00garbage", r"is not UTF-8 text \(byte 0 cannot be "
                                                  r"decoded\)"),
    "missing-column": (lambda w: [("sequence", "score"), ("ACGT", 1)],
                       r"lacks the sequence/importance columns of aam rf-baseline's "
                       r"feature_importance\.tsv"),
    "missing-sequence": (lambda w: _rf_rows(w)[:2] + [("", 0.3)], r"line 3 has no sequence"),
    "other-data": (lambda w: [("sequence", "importance")]
                   + [("ACGT" * 25 + "A" * i, 0.1) for i in range(20)],
                   r"none of the 20 ASVs in .*importances-other-data\.tsv is an ASV "
                   r"of .*prepared-regression: the forest was fitted on other data"),
}


@pytest.mark.parametrize("case", sorted(RF_CASES))
def test_bad_rf_importances_are_one_line(case, w, tmp_path, capsys):
    rows, pattern = RF_CASES[case]
    path = _importances(w, case, rows(w))
    line = _fails(_argv(w, tmp_path / "out", "--rf-importances", str(path)), capsys)
    assert re.search(pattern, line), line


def test_partial_overlap_is_counted_and_a_small_one_warned(w, tmp_path, capsys):
    sequences = w["sequences"]
    rows = ([("sequence", "importance")] + [(s.lower(), 1.0 - i / 10) for i, s in
                                            enumerate(sequences[:3])]
            + [("ACGT" * 25 + "A" * i, 0.01) for i in range(10)])
    out = tmp_path / "out"
    capsys.readouterr()
    assert aam_main(_argv(w, out, "--rf-importances", str(_importances(w, "partial", rows)))) == 0
    err = capsys.readouterr().err
    assert re.search(r"WARNING only 3 of the 13 ASVs in .*importances-partial\.tsv are ASVs of "
                     r".*prepared-regression; the rank agreement uses those 3", err), err
    summary = json.loads((out / "explain.json").read_text())
    assert summary["rf_importances"]["n_asvs"] == 13
    assert summary["rf_importances"]["n_shared"] == 3
    table = pd.read_csv(out / "attributions.tsv", sep="\t")
    ranked = table.dropna(subset=["rf_rank"])
    assert set(ranked["sequence"]) <= set(sequences[:3])  # lower case matched to the data
    assert sorted(ranked["rf_rank"]) == list(range(1, len(ranked) + 1))


def test_full_overlap_is_not_warned(w, tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    path = _importances(w, "full", _rf_rows(w))
    assert aam_main(_argv(w, out, "--rf-importances", str(path))) == 0
    assert "WARNING" not in capsys.readouterr().err
    summary = json.loads((out / "explain.json").read_text())
    assert summary["rf_importances"]["n_shared"] == summary["rf_importances"]["n_asvs"] == N_ASVS


def test_rf_reader_keys_by_upper_case_sequence(tmp_path):
    path = tmp_path / "fi.tsv"
    path.write_text("sequence\timportance\ttaxon\n acgt \t0.5\tx\nGGTT\t0\t\n")
    got = read_rf_importances(path)
    assert got.to_dict() == {"ACGT": 0.5, "GGTT": 0.0}
    shared, overlap = shared_importances(got, ["acgt", "TTTT"], path, "data")
    assert shared.to_dict() == {"acgt": 0.5} and overlap == {"n_asvs": 2, "n_shared": 1}
    with pytest.raises(InputError, match=r"none of the 2 ASVs in .*fi\.tsv is an ASV of data"):
        shared_importances(got, ["TTTT"], path, "data")


TAXONOMY_CASES = {
    "duplicate-id": (lambda s: [(x, "k__B") for x in s] + [(s[4], "k__C")],
                     r"lists Feature ID [ACGT]{32}… more than once \(lines 6, 18\)\. Keep one row "
                     r"per feature"),
    "foreign-ids": (lambda s: [("ACGT" * 25 + "A" * i, "k__B") for i in range(5)],
                    r"none of the 5 Feature IDs in .*tax-foreign-ids\.tsv is a feature of "
                    r".*prepared-regression \(first: ACGT"),
}


@pytest.mark.parametrize("case", sorted(TAXONOMY_CASES))
def test_bad_taxonomy_is_one_line(case, w, tmp_path, capsys):
    rows, pattern = TAXONOMY_CASES[case]
    path = w["root"] / f"tax-{case}.tsv"
    path.write_text("Feature ID\tTaxon\n" + "".join(f"{a}\t{b}\n" for a, b in
                                                    rows(w["sequences"])))
    line = _fails(_argv(w, tmp_path / "out", "--taxonomy", str(path)), capsys)
    assert re.search(pattern, line), line


def test_taxonomy_with_some_foreign_ids_warns_with_the_count(w, tmp_path, capsys):
    path = tmp_path / "taxonomy.tsv"
    path.write_text("Feature ID\tTaxon\n" + "".join(f"{s}\tk__B; f__F{i % 2}\n" for i, s in
                                                    enumerate(w["sequences"]))
                    + "".join(f"OTHER{i}\tk__B\n" for i in range(3)))
    capsys.readouterr()
    out = tmp_path / "out"
    assert aam_main(_argv(w, out, "--taxonomy", str(path))) == 0
    err = capsys.readouterr().err
    assert re.search(r"WARNING 3 of 19 Feature IDs in .*taxonomy\.tsv are not features of "
                     r".*prepared-regression and are ignored \(first: OTHER0, OTHER1, OTHER2\)",
                     err), err
    table = pd.read_csv(out / "attributions.tsv", sep="\t")
    assert table["taxon"].str.startswith("k__B; f__F").all()


def test_garbled_prepare_json_is_one_line(w, tmp_path, capsys):
    data = tmp_path / "prepared"
    shutil.copytree(w["prepared"], data)
    text = (data / "prepare.json").read_text()
    (data / "prepare.json").write_text(text[:len(text) // 2])
    line = _fails(_argv(w, tmp_path / "out", data=data), capsys)
    assert re.search(r"prepared/prepare\.json is truncated or not valid JSON \(.*\)\. Rerun "
                     r"`aam prepare` to write it again\.", line), line


def test_encoder_checkpoint_names_aam_explain(w, tmp_path, capsys):
    from aam.models.pretrain import PretrainModel
    from aam.training.checkpoint import Checkpoint, save_checkpoint

    cfg = PretrainConfig(model=ModelConfig(embedding_dim=16, attention_heads=2,
                                           nucleotide_layers=1, asv_layers=1, sample_layers=1,
                                           max_bp=100))
    encoder = tmp_path / "encoder.pt"
    save_checkpoint(encoder, Checkpoint("encoder", to_dict(cfg),
                                        PretrainModel(cfg).state_dict()))
    line = _fails(_argv(w, tmp_path / "out", model=encoder), capsys)
    assert re.search(r"encoder\.pt is an encoder checkpoint \(aam pretrain writes encoder\.pt\); "
                     r"aam explain needs a trained model: pass the model\.pt written by aam "
                     r"train\.", line), line
    assert "aam predict" not in line


def test_longer_asvs_than_the_model_read_are_warned(w, tmp_path, capsys):
    sim, data = tmp_path / "sim", tmp_path / "prepared"
    write_simulation(simulate(SimulationConfig(n_samples=12, n_asvs=16, seq_length=120,
                                               n_subjects=3)), sim)
    assert aam_main(["prepare", "--table", str(sim / "table.biom"), "--metadata",
                     str(sim / "metadata.tsv"), "--metadata-column", "target",
                     "--categorical-columns", "category", "--output-dir", str(data)]) == 0
    capsys.readouterr()
    assert aam_main(_argv(w, tmp_path / "out", data=data)) == 0
    err = capsys.readouterr().err
    assert "WARNING ASVs up to 120 nt are truncated to the model's max_bp 100" in err, err
    capsys.readouterr()
    assert aam_main(_argv(w, tmp_path / "out-same")) == 0
    assert "truncated" not in capsys.readouterr().err
