from __future__ import annotations

import pytest
from report_fixtures import make_results

from hemoedge.report.results import Results


@pytest.fixture
def results() -> Results:
    """A full fabricated run (measured figures): 9 pairings, CPU, web and capture metrics."""
    return make_results()
