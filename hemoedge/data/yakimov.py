"""Loader for the Yakimov et al. 2024 fingernail layout (the real set, or `data synth` output).

Bad rows are reported and skipped, each problem naming its CSV line (a real set with one
broken row stays usable); a layout that cannot be read at all (missing CSV or columns, no
usable rows) raises DataError. Refused rows: PATIENT_ID empty, holding a path separator or
`..` (photos are read only from photo/), or shared by several rows (the same photo would
land in two splits: every such row is refused); Hb that is not a finite number, below 30 g/L
(g/dL in the g/L column) or above 250 g/L; boxes that are not exactly 3 lists of 4 finite
numbers (booleans are not numbers), empty, or outside the photo; a missing photo or one that
is not an image (with `decode=True`, as `data check` runs it, one that does not decode in
full, e.g. a truncated JPEG).

Photos are read as a browser's createImageBitmap reads them: EXIF orientation applied
(PIL's ImageOps.exif_transpose), so Python and the app see the same pixels and the boxes refer
to the upright photo.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from hemoedge.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = ("PATIENT_ID", "MEASUREMENT_DATE", "HB_LEVEL_GperL", "NAIL_BOUNDING_BOXES",
           "SKIN_BOUNDING_BOXES")
Box = tuple[int, int, int, int]  # top, left, bottom, right; pixels


@dataclass(frozen=True)
class Record:
    patient_id: str
    session: str  # MEASUREMENT_DATE, an opaque session key
    hb_gdl: float
    nail_boxes: tuple[Box, ...]
    skin_boxes: tuple[Box, ...]
    photo: Path

    def nail_xyxy(self) -> list[tuple[float, float, float, float]]:
        return [(b[1], b[0], b[3], b[2]) for b in self.nail_boxes]

    def skin_xyxy(self) -> list[tuple[float, float, float, float]]:
        return [(b[1], b[0], b[3], b[2]) for b in self.skin_boxes]


@dataclass
class Dataset:
    root: Path
    records: list[Record]
    problems: list[str] = field(default_factory=list)  # one line per skipped row
    orphans: int = 0  # photos with no metadata row (ignored)


def open_image(path: str | Path):
    """The photo as the app sees it: PIL's own Image.open, then EXIF orientation applied (as a
    browser's createImageBitmap does), so `.size` and the pixels are those of the upright
    photo. A photo without an orientation tag stays lazily opened (header only).

    PIL's own Image.open: ultralytics, once imported, replaces Image.open with a wrapper that
    answers a non-image by trying to pip-install pi-heif (a network call at run time, then
    ModuleNotFoundError); hemoedge never goes through that wrapper."""
    import sys

    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) if patches else None
    im = (opener or Image.open)(path)
    try:
        orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # an unreadable EXIF block: no orientation, as a browser treats it
        orientation = 1
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return im
    try:
        return ImageOps.exif_transpose(im)  # decoded, transposed copy; tag reset to 1
    finally:
        im.close()


EXIF_ORIENTATION = 0x0112  # 2-8: the stored pixels must be flipped/rotated for display
BOXES_PER_ROW = 3  # one per finger


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{e.__class__.__name__}: {text[:120]}" if text else e.__class__.__name__


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, fully decoded, EXIF orientation applied (as createImageBitmap does);
    DataError naming the file if it is not a readable image (unknown format, truncated, or a
    header claiming more pixels than PIL decodes safely)."""
    try:
        with open_image(path) as im:
            im.load()  # the whole file: a truncated JPEG fails here, not half-grey
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # decoders raise OSError, SyntaxError, DecompressionBombError, ...
        raise DataError(f"{path}: not a readable image ({_why(e)})") from e


def photo_size(path: str | Path, decode: bool = False) -> tuple[int, int]:
    """(width, height) of the upright photo (EXIF orientation applied); with `decode`, the
    whole image is decoded first. DataError naming the file otherwise."""
    if decode:
        h, w = read_rgb(path).shape[:2]
        return w, h
    try:
        with open_image(path) as im:
            return im.size
    except Exception as e:  # as in read_rgb
        raise DataError(f"{path}: not a readable image ({_why(e)})") from e


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_boxes(text: str, what: str) -> tuple[Box, ...]:
    if text is None or not str(text).strip():
        raise ValueError(f"{what} is empty")
    try:
        boxes = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{what} is not JSON ({text[:40]!r})") from e
    if not isinstance(boxes, list) or len(boxes) != BOXES_PER_ROW:
        n = len(boxes) if isinstance(boxes, list) else type(boxes).__name__
        raise ValueError(f"{what} must be a JSON list of exactly {BOXES_PER_ROW} "
                         f"[top, left, bottom, right] boxes (one per finger), found {n}")
    out = []
    for b in boxes:
        if not (isinstance(b, list) and len(b) == 4 and all(_number(v) for v in b)):
            raise ValueError(f"{what} has an entry {str(b)[:60]}; expected [top, left, bottom, "
                             "right] of 4 finite numbers")
        t, l, bo, r = (round(v) for v in b)
        if bo <= t or r <= l:
            raise ValueError(f"{what} has an empty box {b!r} (bottom <= top or right <= left)")
        out.append((t, l, bo, r))
    return tuple(out)


HB_MIN_GPERL, HB_MAX_GPERL = 30.0, 250.0  # below 30: g/dL in the g/L column


def _check_pid(pid: str) -> None:
    if not pid:
        raise ValueError("PATIENT_ID is empty")
    if "/" in pid or "\\" in pid or ".." in pid or any(ord(c) < 32 for c in pid):
        raise ValueError(f"PATIENT_ID {pid[:40]!r} holds a path separator, '..' or a control "
                         "character; photos are read only from photo/{PATIENT_ID}.jpg")


def _parse_hb(text) -> float:
    """Hb in g/dL from the g/L column."""
    try:
        gperl = float(text)
    except (TypeError, ValueError) as e:
        raise ValueError(f"HB_LEVEL_GperL {text!r} is not a number") from e
    if not math.isfinite(gperl):
        raise ValueError(f"HB_LEVEL_GperL {text!r} is not a finite number")
    if gperl < HB_MIN_GPERL:
        raise ValueError(f"HB_LEVEL_GperL {text} is below {HB_MIN_GPERL:g} g/L: a g/dL value in "
                         "the g/L column? (multiply by 10)")
    if gperl > HB_MAX_GPERL:
        raise ValueError(f"HB_LEVEL_GperL {text} g/L is not plausible (above {HB_MAX_GPERL:g})")
    return gperl / 10.0


def load(root: str | Path, decode: bool = False, quiet: bool = False) -> Dataset:
    """Read DIR/metadata.csv and check every row (see the module docstring). With `decode`
    every photo is decoded in full (`data check`); otherwise only its header is read and a
    photo that fails later is skipped by its reader. Each problem is logged unless `quiet`
    (the caller prints them)."""
    root = Path(root)
    csv_path = root / "metadata.csv"
    if not csv_path.is_file():
        raise DataError(f"{root}: no metadata.csv (expected the Yakimov layout: metadata.csv + photo/)")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_path}: not a readable CSV ({_why(e)})") from e
    except OSError as e:
        raise DataError(f"{csv_path}: cannot be read ({e.strerror or _why(e)})") from e
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"{csv_path}: missing columns {missing}; expected {list(COLUMNS)}, "
                        f"found {header}")
    photos = root / "photo"
    records, problems, seen = [], [], set()
    pids = [(row.get("PATIENT_ID") or "").strip() for row in rows]
    first_line: dict[str, int] = {}
    for line, pid in enumerate(pids, start=2):
        first_line.setdefault(pid, line)
    dup = {p for p, n in Counter(pids).items() if n > 1 and p}
    for line, (row, pid) in enumerate(zip(rows, pids, strict=True), start=2):
        where = f"{csv_path.name}:{line} (patient {pid[:40]})"
        try:
            _check_pid(pid)
            if pid in dup:
                raise ValueError(f"PATIENT_ID {pid} occurs on {Counter(pids)[pid]} rows (first "
                                 f"on line {first_line[pid]}); one photo cannot be two patients")
            hb = _parse_hb(row.get("HB_LEVEL_GperL"))
            nails = _parse_boxes(row.get("NAIL_BOUNDING_BOXES"), "NAIL_BOUNDING_BOXES")
            skins = _parse_boxes(row.get("SKIN_BOUNDING_BOXES"), "SKIN_BOUNDING_BOXES")
            session = (row.get("MEASUREMENT_DATE") or "").strip()
            if not session:
                raise ValueError("MEASUREMENT_DATE is empty")
            photo = _find_photo(photos, pid)
            if photo is None:
                raise ValueError(f"photo/{pid}.jpg is missing")
            try:
                w, h = photo_size(photo, decode=decode)
            except DataError as e:
                raise ValueError(str(e).replace(str(photo), f"photo/{photo.name}")) from e
            for t, l, b, r in nails + skins:
                if t < 0 or l < 0 or b > h or r > w:
                    raise ValueError(f"box {[t, l, b, r]} lies outside the {w}x{h} photo")
        except (ValueError, TypeError, OverflowError) as e:
            problems.append(f"{where}: {e}; row skipped")
            continue
        seen.add(photo.name)
        records.append(Record(pid, session, hb, nails, skins, photo))
    named = set(pids)  # a photo whose row was skipped is not an orphan
    orphans = sum(1 for p in photos.glob("*") if p.is_file() and p.name not in seen
                  and p.stem not in named) if photos.is_dir() else 0
    for p in problems if not quiet else ():
        log.warning(p)
    if not records:
        raise DataError(f"{root}: no usable rows ({len(problems)} skipped); first problem: "
                        f"{problems[0] if problems else 'the CSV is empty'}")
    return Dataset(root, records, problems, orphans)


def _find_photo(photos: Path, pid: str) -> Path | None:
    for ext in (".jpg", ".jpeg", ".JPG", ".png"):
        p = photos / f"{pid}{ext}"
        if p.parent == photos and p.is_file():
            return p
    return None


def read_photos(records: list[Record], read=None) -> tuple[list[Record], dict[str, np.ndarray],
                                                            list[str]]:
    """Read every record's photo: (records whose photo decoded, images by patient id, one
    problem line per photo that did not). Eval and parity skip those photos, print the count
    and go on."""
    read = read or read_rgb
    kept, images, problems = [], {}, []
    for r in records:
        try:
            images[str(r.patient_id)] = read(r.photo)
        except DataError as e:
            problems.append(f"patient {r.patient_id}: {e}; photo skipped")
            continue
        kept.append(r)
    return kept, images, problems


def split(records: list[Record], seed: int = 0, fractions=(0.6, 0.2, 0.2)) -> dict[str, list[Record]]:
    """Session-aware train/val/test split: no MEASUREMENT_DATE in two splits (seeded)."""
    from sklearn.model_selection import GroupShuffleSplit

    groups = np.array([r.session for r in records])
    if len(set(groups)) < 3:
        raise DataError(f"a session-aware split needs at least 3 sessions, found {len(set(groups))}")
    idx = np.arange(len(records))
    test_frac = fractions[2]
    gss = GroupShuffleSplit(n_splits=1, test_size=test_frac, random_state=seed)
    rest, test = next(gss.split(idx, groups=groups))
    val_frac = fractions[1] / (fractions[0] + fractions[1])
    gss2 = GroupShuffleSplit(n_splits=1, test_size=val_frac, random_state=seed + 1)
    tr, va = next(gss2.split(rest, groups=groups[rest]))
    return {"train": [records[i] for i in rest[tr]], "val": [records[i] for i in rest[va]],
            "test": [records[i] for i in test]}


def yolo_labels(rec: Record, w: int, h: int) -> list[str]:
    """YOLO-format label lines: class cx cy w h, normalised; class 0 nail, 1 skin."""
    lines = []
    for cls, boxes in ((0, rec.nail_boxes), (1, rec.skin_boxes)):
        for t, l, b, r in boxes:
            lines.append(f"{cls} {(l + r) / 2 / w:.6f} {(t + b) / 2 / h:.6f} "
                         f"{(r - l) / w:.6f} {(b - t) / h:.6f}")
    return lines


def nail_crops(rec: Record, img: np.ndarray | None = None) -> list[np.ndarray]:
    from hemoedge.preprocess import crop

    img = read_rgb(rec.photo) if img is None else img
    return [crop(img, b) for b in rec.nail_xyxy()]


def cli(args) -> int:
    """`hemoedge data check DIR`: every row checked and every photo decoded in full; each
    problem printed with its CSV line, then the count. Exit 0 clean, 1 problems found (the
    usable rows still load), 2 unreadable (no CSV, missing columns, no usable row)."""
    ds = load(args.dir, decode=True, quiet=True)
    hb = np.array([r.hb_gdl for r in ds.records])
    print(f"{ds.root}: {len(ds.records)} usable rows, {len(ds.problems)} skipped, "
          f"{ds.orphans} photos without a row; Hb {hb.min():.1f}-{hb.max():.1f} g/dL, "
          f"{np.mean(hb < 12) * 100:.0f} % below 12")
    for p in ds.problems:
        print(f"  problem: {p}")
    try:
        parts = split(ds.records, seed=args.seed)
    except DataError as e:
        print(f"  split: {e}")
        parts = None
    for name, recs in (parts or {}).items():
        print(f"  {name}: {len(recs)} patients, {len({r.session for r in recs})} sessions")
    bad = len(ds.problems) + (parts is None)
    print(f"{bad} problem(s) in {len(ds.records) + len(ds.problems)} rows" if bad
          else "no problems")
    return 1 if bad else 0
