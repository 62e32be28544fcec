"""pyproject.toml: test and lint tools in the `dev` extra (not runtime dependencies), package-data
naming only files that exist, and the Makefile installing the extra so `make test` works."""

import glob
import json
import re
import runpy
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from hemoedge.errors import HemoedgeError

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[=<>\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_test_tools_are_a_dev_extra():
    runtime = _names(PROJECT["project"]["dependencies"])
    dev = _names(PROJECT["project"]["optional-dependencies"]["dev"])
    assert {"pytest", "pytest-benchmark", "ruff", "zizmor"} <= dev
    assert not {"pytest", "pytest-benchmark", "ruff", "zizmor"} & runtime
    assert "junitparser" in runtime  # hemoedge gate --junit uses it at run time


def test_the_package_does_not_import_test_tools():
    for path in (ROOT / "hemoedge").rglob("*.py"):
        text = path.read_text()
        for tool in ("import pytest", "pytest_benchmark", "import ruff"):
            assert tool not in text, f"{path} uses {tool}"


def test_package_data_names_files_that_exist():
    for package, patterns in PROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert glob.glob(str(ROOT / package / pattern)), f"{package}/{pattern} matches nothing"


def test_makefile_installs_the_dev_extra():
    assert "-e '.[dev]'" in (ROOT / "Makefile").read_text()


# ---------------------------------------------------------------------------- the web app in a wheel
def _setup_py() -> dict:
    """setup.py's functions, without running setup()."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup_py_under_test")


def _repo_web_files() -> set[str]:
    """Every file the repo has under webapp/ (tracked or new, not ignored), npm's files aside."""
    r = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "webapp"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"not a git checkout ({r.stderr.strip()})")
    files = {p.removeprefix("webapp/") for p in r.stdout.splitlines()}
    return {f for f in files if (ROOT / "webapp" / f).is_file()} - {"package.json",
                                                                    "package-lock.json"}


def test_wheel_carries_every_web_source():
    wheel = _setup_py()["wheel_files"]()
    app = {k.removeprefix("web/app/") for k in wheel if k.startswith("web/app/")}
    assert app == _repo_web_files()
    assert {"index.html", "sw.js", "styles.css", "manifest.webmanifest", "src/app.js"} <= app
    assert all(v.is_file() for v in wheel.values())


def test_the_packaged_sources_build_the_same_assets(tmp_path):
    """What the build reads from the wheel's copy equals what it reads from webapp/."""
    from hemoedge.web.assets import source_assets

    for k, src in _setup_py()["wheel_files"]().items():
        if k.startswith("web/app/"):
            dest = tmp_path / "app" / k.removeprefix("web/app/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    a, b = source_assets(ROOT / "webapp"), source_assets(tmp_path / "app")
    assert sorted(a) == sorted(b)
    assert all(a[k].data == b[k].data for k in a)


def test_new_web_files_are_picked_up_and_npm_files_left_out(tmp_path):
    for rel in ("index.html", "lab.html", "src/lab.js", "src/sub/more.js", "icons/x.png",
                "package.json", "package-lock.json", "node_modules/onnxruntime-web/x.js",
                ".eslintrc", "src/.cache/y"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    assert _setup_py()["app_files"](tmp_path) == [
        "index.html", "lab.html", "icons/x.png", "src/lab.js", "src/sub/more.js"]


def _fake_ort(root, version="same", name="onnxruntime-web", pkg_json=True):
    """An onnxruntime-web package folder with stand-in dist files; returns its dist folder."""
    from hemoedge.web.assets import ORT_FILES, ORT_VERSION

    dist = root / "dist"
    dist.mkdir(parents=True)
    v = ORT_VERSION if version == "same" else version
    for f in ORT_FILES:
        (dist / f).write_text(f)
    if pkg_json:
        (root / "package.json").write_text(json.dumps({"name": name, "version": v}))
    return dist


def test_wheel_vendors_onnxruntime_web_at_the_pinned_version(tmp_path):
    from hemoedge.web.assets import ORT_FILES

    ort_files = _setup_py()["ort_files"]
    assert ort_files(tmp_path) == []  # no `npm ci`: a wheel without it (and a warning)
    _fake_ort(tmp_path / "node_modules" / "onnxruntime-web")
    assert ort_files(tmp_path) == ["package.json", *(f"dist/{f}" for f in ORT_FILES)]
    _fake_ort(tmp_path / "old" / "node_modules" / "onnxruntime-web", version="1.0.0")
    with pytest.raises(RuntimeError, match="run `npm ci` in webapp/"):
        ort_files(tmp_path / "old")
    manifest_in = (ROOT / "MANIFEST.in").read_text()  # an sdist carries the same files
    assert all(f"onnxruntime-web/dist/{f}" in manifest_in for f in ORT_FILES)
    assert (ROOT / "hemoedge/web/vendor/onnxruntime-web/LICENSE").read_text().startswith(
        "MIT License")


def test_ort_version_pins_agree():
    from hemoedge.web.assets import ORT_VERSION

    pkg = json.loads((ROOT / "webapp/package.json").read_text())
    lock = json.loads((ROOT / "webapp/package-lock.json").read_text())
    assert pkg["dependencies"]["onnxruntime-web"] == ORT_VERSION
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == ORT_VERSION
    assert _setup_py()["_assets_constant"]("ORT_VERSION") == ORT_VERSION


# ---------------------------------------------------------------------------- finding onnxruntime-web
@pytest.fixture
def ort_places(tmp_path, monkeypatch):
    """Four onnxruntime-web dist folders: explicit, environment, packaged, source tree."""
    from hemoedge.web import sources

    d = {k: _fake_ort(tmp_path / k / "onnxruntime-web") for k in ("opt", "env", "pkg", "tree")}
    monkeypatch.setattr(sources, "PACKAGED_ORT", d["pkg"])
    monkeypatch.setattr(sources, "TREE_ORT", d["tree"])
    monkeypatch.setattr(sources, "TREE_APP", tmp_path / "tree")
    monkeypatch.setenv(sources.ORT_ENV, str(d["env"]))
    return d


def test_ort_dist_resolution_order(ort_places, monkeypatch):
    from hemoedge.web import sources

    d = ort_places
    assert sources.ort_dist(d["opt"]) == d["opt"]
    assert sources.ort_dist(str(d["opt"].parent)) == d["opt"]  # the package folder also does
    assert sources.ort_dist() == d["env"]
    monkeypatch.setenv(sources.ORT_ENV, "")
    assert sources.ort_dist() == d["pkg"]
    shutil.rmtree(d["pkg"])
    assert sources.ort_dist() == d["tree"]


def test_ort_dist_errors_say_what_to_do(ort_places, tmp_path, monkeypatch):
    from hemoedge.web import sources

    with pytest.raises(HemoedgeError, match=r"\(--ort-dist\): not onnxruntime-web's dist"):
        sources.ort_dist(tmp_path / "nowhere")  # an explicit folder is never skipped
    monkeypatch.setenv(sources.ORT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(HemoedgeError, match=r"\(\$HEMOEDGE_ORT_DIST\)"):
        sources.ort_dist()
    monkeypatch.delenv(sources.ORT_ENV)
    shutil.rmtree(ort_places["pkg"])
    shutil.rmtree(ort_places["tree"])
    with pytest.raises(HemoedgeError) as e:
        sources.ort_dist()
    msg = str(e.value)
    assert "\n" not in msg and "--ort-dist DIR" in msg and "HEMOEDGE_ORT_DIST" in msg
    assert "run `npm ci` in the source tree's webapp/" in msg  # an installed package
    (tmp_path / "tree" / "package.json").write_text("{}")  # a source tree
    with pytest.raises(HemoedgeError, match=f"run `npm ci` in {re.escape(str(tmp_path))}/tree"):
        sources.ort_dist()


def test_cli_ort_dist_error_is_one_line_exit_2(ort_places, tmp_path, monkeypatch, capsys):
    from hemoedge.cli import main
    from hemoedge.web import sources

    # checked before anything else: no artifact is exported or read
    monkeypatch.setenv(sources.ORT_ENV, str(tmp_path / "no"))
    assert main(["webapp", "build", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "($HEMOEDGE_ORT_DIST): not onnxruntime-web's dist" in err
    assert not (tmp_path / "d").exists()


def test_default_models_get_the_variant_they_lack_once(ort_places, tmp_path, monkeypatch,
                                                       capsys):
    """A bare `webapp build` on the embedded default (exported in fp32 only) makes the shipped
    pairing's fp16 / int8 files once, into the cached artifact, then builds."""
    from hemoedge.artifact import Artifact
    from hemoedge.cli import main
    from hemoedge.export import onnx_export
    from hemoedge.quantize import run as qrun
    from hemoedge.web import build

    monkeypatch.syspath_prepend(str(ROOT / "tests" / "web"))
    import webtiny

    art = webtiny.write_artifact(tmp_path / "art", precisions=("fp32",))  # as exported
    monkeypatch.setattr(onnx_export, "default_artifact", lambda: art)
    made, real = [], qrun.main

    def quantize(cfg):  # for real: fp16 takes seconds (int8 would take minutes)
        made.append((cfg.roles, cfg.variants, cfg.art))
        return real(cfg)

    monkeypatch.setattr(qrun, "main", quantize)
    monkeypatch.setattr(build, "main", lambda cfg: made.append(cfg.variant) or 0)
    assert main(["webapp", "build", "--variant", "det=fp32,est=fp16", "--out",
                 str(tmp_path / "d")]) == 0
    assert made[0] == (("estimator",), ("fp16",), art) and made[1] == "det=fp32,est=fp16"
    assert "estimator.fp16.onnx" in Artifact.load(art).files
    assert "making it once" in capsys.readouterr().out
    made.clear()  # the second build finds the file
    assert main(["webapp", "build", "--variant", "det=fp32,est=fp16", "--out",
                 str(tmp_path / "d")]) == 0
    assert made == ["det=fp32,est=fp16"]


def test_ort_dist_at_another_version_is_refused(ort_places, tmp_path, monkeypatch):
    from hemoedge.web import sources

    old = _fake_ort(tmp_path / "old" / "onnxruntime-web", version="1.2.3")
    with pytest.raises(HemoedgeError, match=r"onnxruntime-web 1\.2\.3, the app pins .*--ort-dist"):
        sources.ort_dist(old)
    bare = _fake_ort(tmp_path / "bare", pkg_json=False)  # copied out of npm's layout
    with pytest.raises(HemoedgeError, match=r"no onnxruntime-web package\.json next to it"):
        sources.ort_dist(bare)
    other = _fake_ort(tmp_path / "site", name="my-site")  # someone else's package.json
    assert sources.ort_version(other) is None
    monkeypatch.setenv(sources.ORT_ENV, "")
    shutil.rmtree(ort_places["pkg"])
    shutil.rmtree(ort_places["tree"])
    _fake_ort(tmp_path / "tree" / "onnxruntime-web", version="1.2.4")  # a stale `npm ci`
    with pytest.raises(HemoedgeError, match=r"1\.2\.4, the app pins .*run `npm ci` in"):
        sources.ort_dist()


def test_webapp_dir_prefers_the_packaged_copy(tmp_path, monkeypatch):
    from hemoedge.web import sources

    monkeypatch.setattr(sources, "PACKAGED_APP", tmp_path / "app")
    assert sources.webapp_dir() == sources.TREE_APP  # an editable install: webapp/ in place
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "index.html").write_text("<!doctype html>")
    assert sources.webapp_dir() == tmp_path / "app"


def test_an_installed_package_caches_outside_site_packages(tmp_path, monkeypatch):
    from hemoedge import offline

    monkeypatch.delenv("HEMOEDGE_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert offline.home() == ROOT / ".hemoedge-home"  # the source tree
    monkeypatch.setattr(offline, "__file__", str(tmp_path / "site-packages/hemoedge/offline.py"))
    assert offline.home() == tmp_path / "cache" / "hemoedge"


# ---------------------------------------------------------------------------- a real wheel
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_installed_wheel_builds_and_serves_the_app(tmp_path):
    """pip wheel; a fresh venv that sees the heavy dependencies of this one (not its editable
    hemoedge); install the wheel; from a folder outside the repo build the app on the embedded
    default models and serve it."""
    import os
    import site
    import sys
    import time
    import urllib.request
    import zipfile

    from hemoedge.web.assets import ORT_FILES
    from hemoedge.web.sources import TREE_ORT

    if not all((TREE_ORT / f).is_file() for f in ORT_FILES):
        pytest.skip("webapp/node_modules missing: run `npm ci` in webapp/")
    run = lambda *a, **k: subprocess.run(a, check=True, capture_output=True, text=True, **k)  # noqa: E731
    # no build isolation: this venv's setuptools, nothing fetched
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", str(tmp_path / "wheel"), str(ROOT))
    whl = next((tmp_path / "wheel").glob("hemoedge-*.whl"))
    names = set(zipfile.ZipFile(whl).namelist())
    # exactly the repo's web files (none left over in build/ from an earlier wheel)
    assert {n for n in names if n.startswith("hemoedge/web/app/")} == {
        f"hemoedge/web/app/{f}" for f in _repo_web_files()}
    assert {f"hemoedge/web/vendor/onnxruntime-web/dist/{f}" for f in ORT_FILES} <= names
    assert "hemoedge/web/vendor/onnxruntime-web/LICENSE" in names
    assert "hemoedge/gate/budgets.toml" in names  # the gate's default budgets
    assert not any(n.startswith(("ci/", "tests/", "webapp/")) for n in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    py = venv / "bin" / "python"
    (Path(run(str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
          .stdout.strip()) / "heavy-deps.pth").write_text("\n".join(site.getsitepackages()))
    run(sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(whl))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    env.pop("HEMOEDGE_ORT_DIST", None)
    where = run(str(py), "-c", "import hemoedge.web.sources as s; print(s.__file__); "
                "print(s.webapp_dir()); print(s.ort_dist())", cwd=elsewhere, env=env).stdout
    assert all(line.startswith(str(venv)) for line in where.split()), where

    hemoedge = str(venv / "bin" / "hemoedge")
    # the gate reads the installed package's budgets: a results file lacking their metrics is
    # refused naming one (a budgets file it could not find would be named instead)
    (elsewhere / "r.json").write_text('{"schema": "hemoedge.results/1", "metrics": []}')
    r = subprocess.run([hemoedge, "gate", "r.json"], cwd=elsewhere, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "results lack metric(s) named by budgets: acc.ref." in r.stderr

    dist = elsewhere / "dist"
    # $HEMOEDGE_HOME (tests/conftest.py) is kept: the default artifact is exported once
    r = run(hemoedge, "webapp", "build", "--variant", "det=fp32,est=fp32", "--out", str(dist),
            "--no-compress", cwd=elsewhere, env=env)
    assert f"built {dist}" in r.stdout
    manifest = json.loads((dist / "build-manifest.json").read_text())
    wasm = manifest["files"]["ort-wasm-simd-threaded.wasm"]["file"]
    port = _free_port()
    server = subprocess.Popen([hemoedge, "webapp", "serve", str(dist), "--port", str(port)],
                              cwd=elsewhere, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        for name in ("index.html", wasm):
            for _ in range(100):
                try:
                    resp = urllib.request.urlopen(f"http://127.0.0.1:{port}/{name}", timeout=10)
                    break
                except OSError:
                    time.sleep(0.1)
            assert resp.status == 200
            assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert resp.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert resp.read() == (dist / name).read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=10)
