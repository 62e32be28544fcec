"""Loader for the Yakimov et al. 2024 fingernail layout (the real set, or `data synth` output).

Bad rows are reported and skipped (a real set with one broken row stays usable); a layout
that cannot be read at all (missing CSV or columns, no usable rows) raises DataError.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

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
    """PIL's own Image.open. ultralytics, once imported, replaces Image.open with a wrapper
    that answers a non-image by trying to pip-install pi-heif (a network call at run time,
    then ModuleNotFoundError); hemoedge never goes through that wrapper."""
    import sys

    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) if patches else None
    return (opener or Image.open)(path)


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; DataError naming the file if it is not a readable image."""
    try:
        with open_image(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e.__class__.__name__})") from e


def _parse_boxes(text: str, what: str) -> tuple[Box, ...]:
    try:
        boxes = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} is not JSON ({text[:40]!r})") from e
    if not isinstance(boxes, list) or not boxes:
        raise ValueError(f"{what} must be a non-empty JSON list of [top, left, bottom, right]")
    out = []
    for b in boxes:
        if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)):
            raise ValueError(f"{what} has an entry {b!r}; expected [top, left, bottom, right]")
        t, l, bo, r = (round(v) for v in b)
        if bo <= t or r <= l:
            raise ValueError(f"{what} has an empty box {b!r} (bottom <= top or right <= left)")
        out.append((t, l, bo, r))
    return tuple(out)


def load(root: str | Path) -> Dataset:
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
        raise DataError(f"{csv_path}: not a readable CSV ({e})") from e
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"{csv_path}: missing columns {missing}; expected {list(COLUMNS)}, "
                        f"found {header}")
    photos = root / "photo"
    records, problems, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        pid = (row["PATIENT_ID"] or "").strip()
        where = f"{csv_path.name}:{line} (patient {pid})"
        try:
            hb = float(row["HB_LEVEL_GperL"]) / 10.0
            if not 1.0 <= hb <= 25.0:
                raise ValueError(f"HB_LEVEL_GperL {row['HB_LEVEL_GperL']} g/L is not plausible")
            nails = _parse_boxes(row["NAIL_BOUNDING_BOXES"], "NAIL_BOUNDING_BOXES")
            skins = _parse_boxes(row["SKIN_BOUNDING_BOXES"], "SKIN_BOUNDING_BOXES")
            photo = _find_photo(photos, pid)
            if photo is None:
                raise ValueError(f"photo/{pid}.jpg is missing")
            try:
                with open_image(photo) as im:
                    w, h = im.size
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"{photo.name} is not an image") from e
            for t, l, b, r in nails + skins:
                if t < 0 or l < 0 or b > h or r > w:
                    raise ValueError(f"box {[t, l, b, r]} lies outside the {w}x{h} photo")
        except (ValueError, TypeError) as e:
            problems.append(f"{where}: {e}; row skipped")
            continue
        seen.add(photo.name)
        records.append(Record(pid, row["MEASUREMENT_DATE"].strip(), hb, nails, skins, photo))
    orphans = sum(1 for p in photos.glob("*") if p.is_file() and p.name not in seen) \
        if photos.is_dir() else 0
    for p in problems:
        log.warning(p)
    if not records:
        raise DataError(f"{root}: no usable rows ({len(problems)} skipped); first problem: "
                        f"{problems[0] if problems else 'the CSV is empty'}")
    return Dataset(root, records, problems, orphans)


def _find_photo(photos: Path, pid: str) -> Path | None:
    for ext in (".jpg", ".jpeg", ".JPG", ".png"):
        p = photos / f"{pid}{ext}"
        if p.is_file():
            return p
    return None


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
    ds = load(args.dir)
    parts = split(ds.records, seed=args.seed)
    hb = np.array([r.hb_gdl for r in ds.records])
    print(f"{ds.root}: {len(ds.records)} usable rows, {len(ds.problems)} skipped, "
          f"{ds.orphans} photos without a row; Hb {hb.min():.1f}-{hb.max():.1f} g/dL, "
          f"{np.mean(hb < 12) * 100:.0f} % below 12")
    for name, recs in parts.items():
        print(f"  {name}: {len(recs)} patients, {len({r.session for r in recs})} sessions")
    for p in ds.problems:
        print(f"  skipped: {p}")
    return 0
