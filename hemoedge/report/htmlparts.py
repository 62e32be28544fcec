"""Pieces every report section shares: the Section record (HTML body + Markdown), HTML
escaping, the cell shown for an absent figure, and Absent, the exception a section raises when
its metrics are missing (the page then shows a one-line note instead).
"""

from __future__ import annotations

import html as _html
import json
from dataclasses import dataclass

NA = "-"  # table cell for an absent figure


@dataclass
class Section:
    title: str
    html: str  # body, already escaped
    md: str = ""  # Markdown body ("" = title only in the summary)


def esc(x: object) -> str:
    """HTML-escaped text (quotes too), for element text and attribute values."""
    return _html.escape(str(x), quote=True)


class Absent(Exception):
    """A section's metrics are absent: the message is the one-line note shown instead."""


def plain(v: object) -> str:
    """A string as it is, anything else as sorted JSON (environment values)."""
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)
