"""Atomic writes: nothing at the final path unless the write finished."""

import os
import stat

import pytest

from aam.atomic import atomic_path, write_json


def test_failed_write_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_finished_write_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"r2": 0.5})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "m.json").stat().st_mode)
    assert mode == 0o644
    assert (tmp_path / "m.json").read_text().strip().startswith("{")
