"""Peak memory of one model: a fresh child interpreter (`python -m hemoedge.bench.cpu
--rss-child ...`, so it imports what the benchmark imports) loads only this model, runs it and
reports its VmHWM and the RSS just before the session was created.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from hemoedge.bench.cpu_inputs import random_feeds, session
from hemoedge.bench.machine import _read
from hemoedge.errors import BenchError


def _peak_rss(path: Path, threads: int, runs: int, spin: bool = True) -> dict[str, int]:
    """Peak RSS of a fresh interpreter that loads only this model and runs it `runs` times."""
    cmd = [sys.executable, "-m", "hemoedge.bench.cpu", "--rss-child", str(path), str(threads),
           str(runs), str(int(spin))]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{path}: the peak-RSS child process timed out after 600 s") from e
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{path}: the peak-RSS child process failed ({tail})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _vm_kb(field_name: str) -> int:
    m = re.search(rf"^{field_name}:\s*(\d+)\s*kB", _read("/proc/self/status"), re.M)
    return int(m.group(1)) * 1024 if m else 0


def _rss_child(argv: list[str]) -> int:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork + exec, so a
    # child would report the (larger) benchmarking parent's RSS at fork time.
    path, threads, runs, spin = argv[0], int(argv[1]), int(argv[2]), argv[3] == "1"
    import onnxruntime  # noqa: F401  (counted in `before`, like numpy)

    before = _vm_kb("VmRSS")
    sess = session(path, threads, spin)
    feeds = random_feeds(sess, np.random.default_rng(0))
    for _ in range(runs):
        sess.run(None, feeds)
    print(json.dumps({"peak": _vm_kb("VmHWM"), "before": before}))
    return 0
