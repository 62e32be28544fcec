"""setuptools hook (everything else is in pyproject.toml): a wheel carries the web app's sources
and, when `npm ci` has run in webapp/, the onnxruntime-web files the app ships.

    webapp/**  except node_modules/, package.json, package-lock.json and dot files
        -> hemoedge/web/app/                   (hemoedge.web.sources.PACKAGED_APP)
    webapp/node_modules/onnxruntime-web/{package.json, dist/<ORT_FILES>}
        -> hemoedge/web/vendor/onnxruntime-web/ (next to its LICENSE, package data)

ORT_FILES and ORT_VERSION are read from hemoedge/web/assets.py (one definition). Without
onnxruntime-web in node_modules the wheel is built without it, with a warning; at the wrong
version the build fails. An editable install copies nothing: the package reads webapp/ in place.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEBAPP = ROOT / "webapp"
NOT_APP = ("node_modules", "package.json", "package-lock.json")  # npm's files, not the app's
ORT_PACKAGE = Path("node_modules") / "onnxruntime-web"


def _assets_constant(name: str):
    """A literal assigned at the top of hemoedge/web/assets.py (the package is not importable
    in an isolated build)."""
    tree = ast.parse((ROOT / "hemoedge" / "web" / "assets.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"hemoedge/web/assets.py: no {name} = ...")


def app_files(webapp: Path = WEBAPP) -> list[str]:
    """The app's sources under webapp/, as paths relative to it (new files are included)."""
    out = []
    for d, dirs, files in os.walk(webapp):
        rel = Path(d).relative_to(webapp)
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and
                         (rel != Path(".") or x not in NOT_APP))
        out += [(rel / f).as_posix() for f in sorted(files)
                if not f.startswith(".") and (rel != Path(".") or f not in NOT_APP)]
    return out


def ort_files(webapp: Path = WEBAPP) -> list[str]:
    """onnxruntime-web's package.json and the dist files the app ships, relative to its
    package folder; [] when `npm ci` has not run. RuntimeError at a version the app does not pin."""
    pkg = webapp / ORT_PACKAGE
    names = ["package.json", *(f"dist/{f}" for f in _assets_constant("ORT_FILES"))]
    if not all((pkg / n).is_file() for n in names):
        return []
    found, pinned = json.loads((pkg / "package.json").read_text()).get("version"), \
        _assets_constant("ORT_VERSION")
    if found != pinned:
        raise RuntimeError(f"{pkg}: onnxruntime-web {found}, the app pins {pinned}; "
                           "run `npm ci` in webapp/")
    return names


def wheel_files(webapp: Path = WEBAPP) -> dict[str, Path]:
    """Path inside the package (relative to hemoedge/) -> source file, as the hook copies them."""
    out = {f"web/app/{rel}": webapp / rel for rel in app_files(webapp)}
    ort = ort_files(webapp)
    if not ort:
        print(f"warning: {webapp / ORT_PACKAGE} missing (run `npm ci` in webapp/): the wheel "
              "carries no onnxruntime-web; `hemoedge webapp build` will then need --ort-dist",
              file=sys.stderr)
    out.update({f"web/vendor/onnxruntime-web/{n}": webapp / ORT_PACKAGE / n for n in ort})
    return out


class BuildPyWithWebapp(build_py):
    """build_py, plus the web app and onnxruntime-web copied into the built package."""

    _cached: dict[str, Path] | None = None

    def _copies(self) -> dict[str, Path]:
        if getattr(self, "editable_mode", False):
            return {}
        if self._cached is None:
            self._cached = {os.path.join(self.build_lib, "hemoedge", *k.split("/")): v
                            for k, v in wheel_files().items()}
        return self._cached

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):  # no stale files from an earlier build
            for d in ("app", "vendor/onnxruntime-web/dist"):
                shutil.rmtree(os.path.join(self.build_lib, "hemoedge", "web", d), ignore_errors=True)
        for dest, src in self._copies().items():
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(src, dest)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *self._copies()]


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithWebapp})
