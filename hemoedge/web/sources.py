"""Where `hemoedge webapp build` reads the app's sources and onnxruntime-web's files.

The app's sources (index.html, sw.js, styles.css, the manifest, src/*.js, ...):
    hemoedge/web/app/              inside an installed wheel (setup.py copies webapp/ there)
    webapp/                        the source tree (an editable install reads it in place)

onnxruntime-web's dist folder (ORT_FILES at ORT_VERSION), the first of:
    1. --ort-dist DIR               (BuildConfig.ort_dist)
    2. $HEMOEDGE_ORT_DIST
    3. hemoedge/web/vendor/onnxruntime-web/dist   inside a wheel built after `npm ci` in webapp/
    4. webapp/node_modules/onnxruntime-web/dist   the source tree after `npm ci` in webapp/
An explicit folder (1, 2) that lacks the files is an error, not skipped; DIR may also be the
onnxruntime-web package folder (the one holding dist/). The version is read from the package.json
next to dist/ (npm's layout, kept in the wheel) and must equal ORT_VERSION.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hemoedge.errors import HemoedgeError
from hemoedge.web.assets import ORT_FILES, ORT_VERSION

ORT_ENV = "HEMOEDGE_ORT_DIST"
HERE = Path(__file__).resolve().parent
PACKAGED_APP = HERE / "app"
PACKAGED_ORT = HERE / "vendor" / "onnxruntime-web" / "dist"
TREE_APP = HERE.parents[1] / "webapp"
TREE_ORT = TREE_APP / "node_modules" / "onnxruntime-web" / "dist"


def webapp_dir() -> Path:
    """The packaged copy of the app's sources if there is one, else the source tree's webapp/
    (source_assets says so when neither holds an index.html)."""
    return PACKAGED_APP if (PACKAGED_APP / "index.html").is_file() else TREE_APP


def _has_ort(d: Path) -> bool:
    return all((d / f).is_file() for f in ORT_FILES)


def ort_version(d: Path) -> str | None:
    """The version in the package.json next to a dist folder (npm's layout, and the wheel's
    copy); None when there is none or it is not onnxruntime-web's."""
    try:
        meta = json.loads((d.parent / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("version") if isinstance(meta, dict) and \
        meta.get("name") == "onnxruntime-web" else None


def _pinned(d: Path, fix: str) -> Path:
    found = ort_version(d)
    if found != ORT_VERSION:
        what = f"onnxruntime-web {found}" if found else \
            "no onnxruntime-web package.json next to it"
        raise HemoedgeError(f"{d}: {what}, the app pins {ORT_VERSION}; {fix}")
    return d


def ort_dist(explicit: Path | str | None = None) -> Path:
    """onnxruntime-web's dist folder at the pinned version, found in the order above;
    HemoedgeError (one line: what to do) if there is none."""
    fix = (f"run `npm ci` in {TREE_APP}" if (TREE_APP / "package.json").is_file() else
           "run `npm ci` in the source tree's webapp/ and reinstall")
    fix += f", or pass --ort-dist DIR (or set {ORT_ENV}=DIR) with DIR onnxruntime-web's dist folder"
    env = os.environ.get(ORT_ENV, "").strip()
    given = (explicit, "--ort-dist") if explicit is not None else (env, f"${ORT_ENV}") if env \
        else None
    if given is not None:
        d = Path(given[0]).expanduser()
        for cand in (d, d / "dist"):
            if _has_ort(cand):
                return _pinned(cand, f"point {given[1]} at onnxruntime-web {ORT_VERSION}'s "
                                     "dist folder as npm installs it")
        raise HemoedgeError(f"{d} ({given[1]}): not onnxruntime-web's dist folder (expected "
                            f"{', '.join(ORT_FILES)}); run `npm ci` in webapp/ and pass "
                            "webapp/node_modules/onnxruntime-web/dist")
    for d in (PACKAGED_ORT, TREE_ORT):
        if _has_ort(d):
            return _pinned(d, fix)
    raise HemoedgeError(f"onnxruntime-web {ORT_VERSION} files not found: {fix}")
