"""The app's files before they are written: the webapp sources, onnxruntime-web's files, the
generated icons, and content hashing (DIST/<name>.<hash10>.<ext>) with references between
text assets rewritten to the hashed names, leaves first.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from hemoedge.errors import HemoedgeError

ORT_VERSION = "1.30.0"  # must equal the exact pin in webapp/package.json
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
HASH_LEN = 10  # hex chars of sha256 in asset names
TEXT_SUFFIXES = (".html", ".js", ".css", ".json", ".webmanifest")
# keep their names: the browser finds them by URL (lab.html: the bench page, hemoedge.web.collect)
ENTRY_POINTS = ("index.html", "lab.html", "sw.js")
ICONS = (
    ("icons/icon-192.png", 192, False),
    ("icons/icon-512.png", 512, False),
    ("icons/icon-maskable-512.png", 512, True),
)
_REF = re.compile(r"""(?<=["'(])(\.{1,2}/[\w./-]+)(?=["')])""")  # './x.js', "../y.css", url(./z)


# ---------------------------------------------------------------------------- icons
def _png(rgba) -> bytes:
    """(H, W, 4) uint8 -> PNG bytes (Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def icon_png(size: int, maskable: bool) -> bytes:
    """A white drop on the theme colour; maskable icons keep it inside the 80 % safe zone."""
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    k = 0.62 if maskable else 0.8  # drop height as a fraction of the icon
    cx, cy, r = 0.5, 0.5 + 0.18 * k, 0.3 * k
    body = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    tip_y = cy - 0.62 * k  # point of the drop
    t = (yy - tip_y) / (cy - tip_y)  # 0 at the tip, 1 at the circle's centre line
    cone = (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= r * t)
    img = np.zeros((size, size, 4), np.uint8)
    img[...] = (0x7A, 0x10, 0x20, 255)
    if not maskable:  # rounded square for the "any" purpose
        d = (
            np.maximum(np.abs(xx - 0.5) - 0.34, 0) ** 2
            + np.maximum(np.abs(yy - 0.5) - 0.34, 0) ** 2
        )
        img[d > 0.16**2, 3] = 0
    img[body | cone, :3] = 255
    return _png(img)


# ---------------------------------------------------------------------------- assets
@dataclass
class Asset:
    logical: str  # path in the source tree, e.g. "src/app.js"
    data: bytes
    hashed: bool = True

    @property
    def text(self) -> bool:
        return self.logical.endswith(TEXT_SUFFIXES)


def hashed_name(logical: str, data: bytes) -> str:
    base = posixpath.basename(logical)
    stem, dot, ext = base.rpartition(".")
    return f"{stem}.{hashlib.sha256(data).hexdigest()[:HASH_LEN]}{dot}{ext}"


def _refs(asset: Asset, known: dict[str, Asset]) -> list[str]:
    """Logical names of hashed assets this text asset refers to (stable names need no rewrite)."""
    if not asset.text:
        return []
    base = posixpath.dirname(asset.logical)
    out = []
    for m in _REF.finditer(asset.data.decode("utf-8")):
        target = posixpath.normpath(posixpath.join(base, m.group(1)))
        if target in known and known[target].hashed and target != asset.logical:
            out.append(target)
    return out


def _rewrite(asset: Asset, names: dict[str, str]) -> bytes:
    base = posixpath.dirname(asset.logical)

    def sub(m: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(base, m.group(1)))
        return f"./{names[target]}" if target in names and target != names[target] else m.group(1)

    return _REF.sub(sub, asset.data.decode("utf-8")).encode("utf-8")


def resolve(assets: dict[str, Asset]) -> dict[str, str]:
    """Hash assets leaves-first, rewriting references; returns logical -> file name in DIST."""
    names: dict[str, str] = {}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(key: str, chain: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise HemoedgeError(
                f"webapp assets refer to each other in a cycle: {' -> '.join((*chain, key))}"
            )
        state[key] = 1
        a = assets[key]
        for dep in _refs(a, assets):
            visit(dep, (*chain, key))
        if a.text:
            a.data = _rewrite(a, names)
        names[key] = hashed_name(key, a.data) if a.hashed else key
        state[key] = 2

    for key in sorted(assets):
        visit(key, ())
    clash = len(set(names.values())) != len(names)
    if clash:
        raise HemoedgeError("two webapp assets map to the same file name; rename one of them")
    return names


def source_assets(webapp: Path) -> dict[str, Asset]:
    """index.html, styles.css, the manifest, src/*.js and the icons (entry points unhashed)."""
    src = webapp
    if not (src / "index.html").is_file():
        raise HemoedgeError(f"{src}: webapp sources missing (no index.html)")
    assets: dict[str, Asset] = {}
    for rel in [
        "index.html",
        "lab.html",
        "styles.css",
        "manifest.webmanifest",
        *sorted(f"src/{p.name}" for p in (src / "src").glob("*.js")),
    ]:
        assets[rel] = Asset(rel, (src / rel).read_bytes(), hashed=rel not in ENTRY_POINTS)
    for rel, size, maskable in ICONS:
        assets[rel] = Asset(rel, icon_png(size, maskable))
    return assets


def ort_assets(ort_dist: Path, webapp: Path) -> dict[str, Asset]:
    """onnxruntime-web's files at the pinned version (`npm ci` in `webapp` installs them)."""
    d = ort_dist
    pkg = d.parent / "package.json"
    if not all((d / f).is_file() for f in ORT_FILES) or not pkg.is_file():
        raise HemoedgeError(f"{d}: onnxruntime-web files missing; run `npm ci` in {webapp}")
    found = json.loads(pkg.read_text()).get("version")
    if found != ORT_VERSION:
        raise HemoedgeError(
            f"{pkg}: onnxruntime-web {found} installed, the app pins {ORT_VERSION}; "
            f"run `npm ci` in {webapp}"
        )
    out = {}
    for f in ORT_FILES:
        data = (d / f).read_bytes()
        if f.endswith(".mjs"):  # drop the source-map comment: the .map is not shipped
            data = re.sub(rb"\n//# sourceMappingURL=\S+\s*$", b"\n", data)
        # the worker imports ort as './ort.wasm.min.mjs' next to it in src/
        key = f"src/{f}" if f == "ort.wasm.min.mjs" else f
        out[key] = Asset(key, data)
    return out
