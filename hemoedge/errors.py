"""The hemoedge error tree. The CLI maps HemoedgeError (and an OSError from the file system) to
one line on stderr and exit code 2; this module also holds the output-path checks that every
writer runs before doing any work, so a bad output path never costs a whole run."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


class HemoedgeError(Exception):
    """Base class: bad input or usage. The message says what was expected and what was found."""


class DataError(HemoedgeError):
    """A data set, CSV, photo or video that does not match the expected layout."""


class CheckpointError(HemoedgeError):
    """A missing, corrupt or unrecognised model checkpoint."""


class ExportError(HemoedgeError):
    """ONNX export, simplification or validation failed."""


class QuantizeError(HemoedgeError):
    """Quantisation could not produce a valid variant."""


class BenchError(HemoedgeError):
    """A benchmark could not run (missing browser, hung page, bad model)."""


class ResultsError(HemoedgeError):
    """A results.json, budgets or baseline file that does not match the schema."""


class ArtifactError(HemoedgeError):
    """An artifact folder whose manifest or model files are missing, corrupt or changed."""


class OutputError(HemoedgeError):
    """An output path that cannot be written (a file where a folder belongs, or the reverse,
    or a read-only location)."""


def one_line(text: str) -> str:
    """A message on one line: its lines joined with '; ' (blank lines dropped)."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts) if parts else str(text).strip()


def os_error_message(e: OSError) -> str:
    """'<file>: <reason>' for an OSError (both file names for a rename)."""
    reason = e.strerror or e.__class__.__name__
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else one_line(str(e)) or reason


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path, what: str, target: Path) -> None:
    """Create and remove a file in `folder`: os.access cannot tell (root passes it even where
    the file system refuses)."""
    if not folder.is_dir():
        raise OutputError(f"{target}: {what} cannot be written: {folder} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".hemoedge-probe.")
    except OSError as e:
        reason = e.strerror or e.__class__.__name__
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = f"{folder} is not writable ({reason})"
        raise OutputError(f"{target}: {what} cannot be written: {reason}") from e
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """An output FILE path that can be written: not a folder, and its folder (or the nearest
    existing one, which the writer will create below) accepts new files."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; the {what} must be a file path")
    if path.exists() and not path.is_file():
        raise OutputError(f"{path}: exists and is not a regular file; the {what} must be a file")
    _probe(_existing_ancestor(path.parent), what, path)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """An output FOLDER path that can be written: a folder (or absent, under a writable
    folder), never an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; the {what} must be a folder")
    _probe(path if path.is_dir() else _existing_ancestor(path.parent), what, path)
    return path
