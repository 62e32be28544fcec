"""Nothing reaches the network at run time: a CLI command that imports ultralytics (and
builds and exports a YOLO model) succeeds inside a network namespace with loopback only."""

import os
import shutil
import subprocess
import sys

import pytest


def _unshare_ok() -> tuple[bool, str]:
    if shutil.which("unshare") is None:
        return False, "no unshare binary"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip()


def test_cli_runs_with_no_network(tmp_path, random_checkpoints):
    ok, why = _unshare_ok()
    if not ok:
        print(f"unshare -n not permitted here: {why}")
        pytest.skip(f"this machine does not permit `unshare -n` ({why})")
    home = tmp_path / "home"
    env = {**os.environ, "HEMOEDGE_HOME": str(home), "HOME": str(tmp_path / "user-home")}
    code = ("import sys; from hemoedge.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", code, "export", "--detector",
         str(random_checkpoints[0]), "--estimator", str(random_checkpoints[1]),
         "--out", str(tmp_path / "art")],
        capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "art" / "detector.fp32.onnx").is_file()
    # ultralytics kept its settings and font inside the project-owned folder
    assert (home / "ultralytics" / "Ultralytics" / "settings.json").is_file()
    assert not (tmp_path / "user-home" / ".config" / "Ultralytics").exists()
