"""Every command module runs its command under ``python -m aam.cli.<module>`` (never a silent
exit 0), as ``python -m aam.cli <command>`` does."""

from __future__ import annotations

import runpy
import subprocess
import sys

import pytest

from aam.cli.__main__ import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
# runpy warns when the module was imported earlier in this test process; `python -m` does not.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
def test_python_m_module_runs_the_command(command, monkeypatch, capsys):
    module = COMMANDS[command][0]
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: aam {command}")


def test_python_m_rf_baseline_without_arguments_is_an_error():
    """The seed's invocation of the baseline, in a real process: argparse refuses it (exit 2)."""
    done = subprocess.run([sys.executable, "-m", "aam.cli.rf_baseline"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "the following arguments are required" in done.stderr
