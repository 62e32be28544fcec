"""Fixtures for the quantisation tests: tiny models and data built in code (qtiny.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import qtiny


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def tiny_art(tmp_path: Path) -> Path:
    return qtiny.make_art(tmp_path / "art")


@pytest.fixture(scope="session")
def tiny_data():
    return qtiny.dataset()
