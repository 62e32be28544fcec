"""The command-line contract: sub-commands exist; bad input is one line and exit 2."""

import subprocess
import sys

import pytest

from hemoedge.cli import build_parser, main

COMMANDS = ["data", "train", "export", "quantize", "parity", "eval", "bench", "report", "choose",
            "gate", "webapp", "run", "sweep"]


def test_every_design_command_is_there():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("argv, message", [
    (["data", "check", "/nonexistent/set"], "/nonexistent/set: no metadata.csv"),
    (["parity", "/nonexistent/art"], "/nonexistent/art: not an artifact folder (no manifest.json)"),
    (["data", "video", "--out", "/tmp/x.y4m", "--hb", "99"], "outside the plausible 3-20 g/dL"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hemoedge: error: ") and message in err[0]


def test_usage_error_exit_2():
    r = subprocess.run([sys.executable, "-m", "hemoedge.cli", "bench", "cpu", "--threads", "a,b"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "expected comma-separated integers" in r.stderr
