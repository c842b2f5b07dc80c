"""The prepare.json reader: a truncated, garbled or mistyped summary is one line that names the
file and says to rerun aam prepare, in the library and for aam train."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from aam.cli.__main__ import main as aam_main
from aam.data.prepared import load_prepared, read_prepare_info
from aam.data.simulate import SimulationConfig, simulate, write_simulation
from aam.errors import InputError

RERUN = r"Rerun `aam prepare` to write it again\.$"
CASES = {
    "truncated": (lambda text: text[: len(text) // 2].encode(),
                  r"prepare\.json is truncated or not valid JSON \(.+\)\. "),
    "empty": (lambda text: b"",
              r"prepare\.json is truncated or not valid JSON \(Expecting value.*\)\. "),
    "binary": (lambda text: b"\x89PNG\r\n\x1a\n\x00\xff",
               r"prepare\.json is not UTF-8 text \(byte \d+\): it is garbled\. "),
    "a-list": (lambda text: b"[1, 2]",
               r"prepare\.json holds a JSON list, not the object aam prepare writes\. "),
    "task-misspelled": (lambda text: text.replace('"regression"', '"regresion"').encode(),
                        r"prepare\.json: field 'task' must be one of regression, classification,"
                        r" got 'regresion'\. "),
    "target-a-number": (lambda text: text.replace('"target_column": "target"',
                                                  '"target_column": 7').encode(),
                        r"field 'target_column' must be text, got 7\. "),
    "columns-not-a-list": (lambda text: json.dumps({**json.loads(text),
                                                    "categorical_columns": "category"}).encode(),
                           r"field 'categorical_columns' must be a list of text, got "
                           r"'category'\. "),
    "inputs-not-an-object": (lambda text: json.dumps({**json.loads(text),
                                                      "inputs": [1]}).encode(),
                             r"field 'inputs' must be an object, got \[1\]\. "),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    write_simulation(simulate(SimulationConfig(n_samples=12, n_asvs=16, seq_length=100)),
                     root / "sim")
    out = root / "prepared"
    assert aam_main(["prepare", "--table", str(root / "sim" / "table.biom"), "--metadata",
                     str(root / "sim" / "metadata.tsv"), "--metadata-column", "target",
                     "--categorical-columns", "category", "--output-dir", str(out)]) == 0
    return out


def _garbled(prepared: Path, tmp_path: Path, case: str) -> Path:
    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy)
    text = (prepared / "prepare.json").read_text()
    (copy / "prepare.json").write_bytes(CASES[case][0](text))
    return copy


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_prepare_json_is_an_input_error(case, prepared, tmp_path):
    copy = _garbled(prepared, tmp_path, case)
    with pytest.raises(InputError, match=CASES[case][1] + RERUN):
        read_prepare_info(copy / "prepare.json")
    with pytest.raises(InputError, match=CASES[case][1]):
        load_prepared(copy)


@pytest.mark.parametrize("case", ["truncated", "binary", "task-misspelled"])
def test_train_on_a_bad_prepare_json_is_one_line(case, prepared, tmp_path, capsys):
    copy = _garbled(prepared, tmp_path, case)
    out = tmp_path / "run"
    capsys.readouterr()
    code = aam_main(["train", "--data-dir", str(copy), "--output-dir", str(out), "--epochs", "1",
                     "--device", "cpu"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " INFO " not in line]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("aam train: error: ")
    assert re.search(CASES[case][1] + RERUN, lines[0]), lines[0]
    assert not out.exists()


def test_valid_prepare_json_is_returned_as_written(prepared):
    info = read_prepare_info(prepared / "prepare.json")
    assert info == json.loads((prepared / "prepare.json").read_text())
    assert info["target_column"] == "target" and info["categorical_columns"] == ["category"]
    with pytest.raises(FileNotFoundError, match=r"prepared file not found: .*nope\.json"):
        read_prepare_info(prepared / "nope.json")
