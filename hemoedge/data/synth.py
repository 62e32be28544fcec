"""`hemoedge data synth`: a synthetic fingernail set in exactly the Yakimov et al. 2024 layout.

    DIR/metadata.csv  PATIENT_ID, MEASUREMENT_DATE, HB_LEVEL_GperL, NAIL_BOUNDING_BOXES,
                      SKIN_BOUNDING_BOXES   (boxes: JSON list of 3 [top, left, bottom, right])
    DIR/photo/{PATIENT_ID}.jpg

Deterministic for a seed. Rendering model: hemoedge/data/render.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hemoedge.data import render
from hemoedge.errors import DataError
from hemoedge.names import ANAEMIA_THRESHOLD_GDL

log = logging.getLogger(__name__)

COLUMNS = ("PATIENT_ID", "MEASUREMENT_DATE", "HB_LEVEL_GperL", "NAIL_BOUNDING_BOXES",
           "SKIN_BOUNDING_BOXES")
HB_MIN, HB_MAX = 4.4, 16.9  # g/dL, the real set's range
ANAEMIC_FRACTION = 0.28  # share below the anaemia threshold (12 g/dL) in the real set


def draw_hb(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hb in g/dL shaped like the real set: 4.4-16.9, about 28 % below 12, long low tail."""
    low = rng.random(n) < ANAEMIC_FRACTION
    t = ANAEMIA_THRESHOLD_GDL
    hb = np.where(low, t - rng.gamma(1.6, 1.25, n), rng.normal(13.7, 1.15, n))
    hb = np.where(low, np.clip(hb, HB_MIN, 11.95), np.clip(hb, t, HB_MAX))  # 11.95: just below t
    return np.round(hb, 1)


def session_keys(rng: np.random.Generator, sessions: int) -> list[str]:
    start = dt.date(2023, 2, 1)
    days = sorted(rng.choice(np.arange(0, 400), size=sessions, replace=False))
    return [(start + dt.timedelta(days=int(d))).isoformat() for d in days]


def synthesize(out: str | Path, patients: int = 250, sessions: int = 20, seed: int = 0,
               orphans: int | None = None, progress: bool = True) -> Path:
    """Write the set into `out` (atomically: built in a temp folder, then renamed)."""
    if patients < 1 or sessions < 1:
        raise DataError(f"need at least 1 patient and 1 session, got {patients} and {sessions}")
    if seed < 0:
        raise DataError(f"the seed must be >= 0, got {seed}")
    sessions = min(sessions, patients)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose a new --out")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: folder exists and is not empty; choose a new --out")
    rng = np.random.default_rng(seed)
    keys = session_keys(rng, sessions)
    sess = {k: render.random_session(np.random.default_rng([seed, i, 7]), k)
            for i, k in enumerate(keys)}
    hb = draw_hb(rng, patients)
    # every session gets at least one patient, the rest spread unevenly like real clinic days
    assign = np.concatenate([np.arange(sessions),
                             rng.choice(sessions, patients - sessions,
                                        p=rng.dirichlet(np.full(sessions, 3.0)))])
    rng.shuffle(assign)
    melanin = rng.uniform(0.1, 2.2, patients)
    n_orphans = max(1, patients // 100) if orphans is None else orphans

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        (tmp / "photo").mkdir()
        rows = []
        ids = [f"{i + 1:04d}" for i in range(patients + n_orphans)]
        for i in _progress(range(patients + n_orphans), "synth photos", progress):
            key = keys[assign[i]] if i < patients else keys[i % sessions]
            p = render.Patient(
                hb_gdl=float(hb[i]) if i < patients else float(draw_hb(rng, 1)[0]),
                melanin=float(melanin[i % patients]),
                perfusion=tuple(float(v) for v in rng.normal(1.0, 0.06, 3)),
                seed=int(np.random.default_rng([seed, i, 1]).integers(2**31)),
            )
            lin, nails, skins = render.render(p, sess[key])
            img = render.camera(lin, sess[key], np.random.default_rng([seed, i, 2]))
            Image.fromarray(img).save(tmp / "photo" / f"{ids[i]}.jpg",
                                      quality=sess[key].jpeg_quality)
            if i < patients:  # orphans: photos without a metadata row, as in the real set
                rows.append({"PATIENT_ID": ids[i], "MEASUREMENT_DATE": key,
                             "HB_LEVEL_GperL": f"{p.hb_gdl * 10:.0f}",
                             "NAIL_BOUNDING_BOXES": json.dumps(nails),
                             "SKIN_BOUNDING_BOXES": json.dumps(skins)})
        with open(tmp / "metadata.csv", "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=COLUMNS)
            wr.writeheader()
            wr.writerows(rows)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d patients (%d sessions, %d orphan photos) to %s", patients, sessions,
             n_orphans, out)
    return out


def _progress(it, label: str, enabled: bool):
    if not enabled:
        return it
    from rich.progress import track

    return track(it, description=label, transient=True)


@dataclass(frozen=True)
class SynthConfig:
    """`hemoedge data synth`: where, how many patients and measurement sessions, the seed."""
    out: Path
    patients: int = 250
    sessions: int = 20  # MEASUREMENT_DATE groups
    seed: int = 0


def config_from_args(args) -> SynthConfig:
    return SynthConfig(out=Path(args.out), patients=args.patients, sessions=args.sessions,
                       seed=args.seed)


def cli(args) -> int:
    return main(config_from_args(args))


def main(cfg: SynthConfig) -> int:
    """`hemoedge data synth` once its config is known (also what `run` and `sweep` call)."""
    out = synthesize(cfg.out, patients=cfg.patients, sessions=cfg.sessions, seed=cfg.seed)
    from hemoedge.data.yakimov import load

    ds = load(out)
    hb = np.array([r.hb_gdl for r in ds.records])
    print(f"wrote {out}: {len(ds.records)} patients, {len({r.session for r in ds.records})} "
          f"sessions, Hb {hb.min():.1f}-{hb.max():.1f} g/dL, "
          f"{np.mean(hb < ANAEMIA_THRESHOLD_GDL) * 100:.0f} % below {ANAEMIA_THRESHOLD_GDL:g}, "
          f"{ds.orphans} photos without a metadata row")
    return 0


def sample_photos(n: int = 4, seed: int = 12345) -> list[tuple[np.ndarray, list, float]]:
    """Render n photos in memory (no files): [(RGB uint8, nail boxes [t,l,b,r], Hb g/dL)].
    Used where a few real-looking frames are needed and no data folder was given."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = render.random_session(np.random.default_rng([seed, i, 3]), f"s{i}")
        hb = float(draw_hb(rng, 1)[0])
        p = render.Patient(hb, float(rng.uniform(0.1, 2.2)), (1.0, 1.0, 1.0),
                           int(rng.integers(2**31)))
        lin, nails, _ = render.render(p, s)
        out.append((render.camera(lin, s, np.random.default_rng([seed, i, 4])), nails, hb))
    return out
