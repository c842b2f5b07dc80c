"""One rule for sample IDs and sample lists (aam.data.sample_ids)."""

from __future__ import annotations

import pytest

from aam.data.sample_ids import (clean_ids, read_sample_list, read_sample_lists, short_id,
                                 show_ids)
from aam.errors import InputError


def test_whitespace_is_stripped_the_same_way_in_lists_and_id_columns(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbf S1 \r\n\n\tS2\r\nS3   \n")
    assert read_sample_list(path) == ["S1", "S2", "S3"]
    assert clean_ids([" S1", "S2\r", "S3\t"], "table") == ["S1", "S2", "S3"]


@pytest.mark.parametrize("text, pattern", [
    ("S1\nS2\nS1\n", r"lists 1 \(first 1: S1\) sample IDs more than once"),
    ("S1\n S1\n", r"lists 1 \(first 1: S1\) sample IDs more than once"),
    ("S1\tS2\n", r"line 1 has a sample ID with a control character: 'S1\\tS2'"),
    ("\n \n", r"lists no samples"),
])
def test_bad_lists_are_refused_with_the_id(tmp_path, text, pattern):
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=pattern):
        read_sample_list(path)


def test_binary_list_is_an_input_error(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"S1\n\xff\xfe\n")
    with pytest.raises(InputError, match="not a UTF-8 text sample list"):
        read_sample_list(path)


def test_lists_must_be_known_and_disjoint(tmp_path):
    (tmp_path / "t.txt").write_text("A\nB\n")
    (tmp_path / "v.txt").write_text("C\nB\n")
    (tmp_path / "x.txt").write_text("C\nZ\n")
    with pytest.raises(InputError, match=r"1 \(first 1: B\) samples are in both --train-samples "
                                         r".*t\.txt and --val-samples .*v\.txt"):
        read_sample_lists({"--train-samples": tmp_path / "t.txt",
                           "--val-samples": tmp_path / "v.txt"}, ["A", "B", "C"])
    with pytest.raises(InputError, match=r"1 samples in --val-samples .*x\.txt are not in the "
                                         r"prepared table \(first 1: Z\)"):
        read_sample_lists({"--train-samples": tmp_path / "t.txt",
                           "--val-samples": tmp_path / "x.txt"}, ["A", "B", "C"])
    lists = read_sample_lists({"--train-samples": tmp_path / "t.txt", "--test-samples": None,
                               "--val-samples": tmp_path / "x.txt"})
    assert lists == {"--train-samples": ["A", "B"], "--val-samples": ["C", "Z"]}


def test_long_ids_are_shortened_in_messages():
    seq = "ACGT" * 40
    assert short_id(seq) == seq[:20] + "…"
    assert len(show_ids([seq] * 10)) < 160
    assert short_id(" S1") == "' S1'"


@pytest.mark.parametrize("raw", ["S1\u200b", "S\x001", "S1\u00a0x"])
def test_invisible_characters_inside_an_id_are_refused_with_repr(tmp_path, raw):
    path = tmp_path / "list.txt"
    path.write_text(f"S0\n{raw}\n")
    with pytest.raises(InputError, match=r"line 2 has a sample ID with a control character: '"):
        read_sample_list(path)
