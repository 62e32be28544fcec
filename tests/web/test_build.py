"""hemoedge.web.build: hashed names, references, the precache list, and bad input."""

from __future__ import annotations

import json
import re
import shutil
import sys

import onnx
import pytest
from webhelp import needs_ort

from hemoedge.errors import HemoedgeError
from hemoedge.spec import METADATA_KEY, detector_spec, estimator_spec
from hemoedge.web.build import HASH_LEN, ORT_FILES, BuildConfig, build, parse_variant

HASHED = re.compile(rf"^[\w.-]+\.[0-9a-f]{{{HASH_LEN}}}\.\w+$")
REF = re.compile(r"""["'(]\./([\w.-]+)["')]""")


def test_parse_variant():
    assert parse_variant("det=int8,est=fp32") == ("int8", "fp32")
    assert parse_variant(" est=fp16 , det=fp32 ") == ("fp32", "fp16")


@pytest.mark.parametrize(
    "text, why",
    [
        ("det=int9,est=fp32", "unknown precision 'int9'"),
        ("det=int8", "needs both models"),
        ("det=int8,est=fp32,det=fp16", "expected 'det=P,est=Q'"),
        ("int8", "expected 'det=P,est=Q'"),
        ("", "needs both models"),
    ],
)
def test_bad_variant(text, why):
    with pytest.raises(HemoedgeError, match=re.escape(why)):
        parse_variant(text)


@needs_ort
def test_layout_hashes_and_precache(dist):
    every = {p.name for p in dist.iterdir()}
    files = {n for n in every if not n.endswith((".br", ".gz"))}
    bm = json.loads((dist / "build-manifest.json").read_text())
    assert {"index.html", "sw.js", "build-manifest.json", "_headers", "nginx.conf"} <= files
    files -= {"_headers", "nginx.conf"}  # host configuration, not served to the app
    for name in files - {"index.html", "lab.html", "sw.js", "build-manifest.json"}:
        assert HASHED.match(name), name
    # precompressed siblings: each decodes to its file and is smaller
    for name in every - files - {"_headers", "nginx.conf"}:
        import gzip

        import brotli

        base, ext = name.rsplit(".", 1)
        assert base in files and ext in ("br", "gz"), name
        raw = (dist / name).read_bytes()
        assert (gzip.decompress(raw) if ext == "gz" else brotli.decompress(raw)) == (
            dist / base).read_bytes(), name
        assert len(raw) < (dist / base).stat().st_size
        assert bm["compressed"][base][ext] == len(raw)
    assert any(n.endswith(".wasm.br") for n in every) and any(n.endswith(".wasm.gz") for n in every)
    # every hashed name really is the content's hash
    for logical, f in bm["files"].items():
        import hashlib

        data = (dist / f["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"], logical
        if f["file"] not in ("index.html", "lab.html"):
            assert f["file"].split(".")[-2] == f["sha256"][:HASH_LEN]
    # precache = every file the app needs, nothing more: all but sw.js and the build manifest
    assert set(bm["precache"]) == files - {"sw.js", "build-manifest.json"}
    sw = (dist / "sw.js").read_text()
    pre = json.loads(re.search(r"const PRECACHE = (\[.*?\]);", sw, re.S).group(1))
    assert pre == bm["precache"]
    assert re.search(r'const VERSION = "([0-9a-f]{12})";', sw).group(1) == bm["version"]
    # only the WASM build of onnxruntime-web is shipped
    ort = sorted(n for n in files if n.startswith("ort"))
    assert sorted(re.sub(r"\.[0-9a-f]{10}", "", n) for n in ort) == sorted(ORT_FILES)


@needs_ort
def test_every_relative_reference_resolves(dist):
    for p in dist.iterdir():
        if p.suffix in (".html", ".js", ".css", ".json", ".webmanifest"):
            for ref in REF.findall(p.read_text()):
                assert (dist / ref).is_file(), f"{p.name} refers to missing ./{ref}"
    html = (dist / "index.html").read_text()
    assert "./src/" not in html and "Not a medical device" in html
    assert "connect-src 'self'" in html and "'wasm-unsafe-eval'" in html
    assert "http://" not in html and "https://" not in html  # no third-party origin


@needs_ort
def test_model_manifest_comes_from_onnx_metadata(dist, tiny_art):
    name = next(p.name for p in dist.iterdir() if p.name.startswith("models.") and p.suffix == ".json")
    m = json.loads((dist / name).read_text())
    assert m["variant"] == "det=int8,est=fp32"
    assert m["postprocess"] == {"conf": 0.25, "iou": 0.45, "maxDet": 50}
    from hemoedge.severity import who_thresholds

    assert m["who"] == who_thresholds()  # the app's WHO category reads its thresholds here
    for role, prec, spec in (
        ("detector", "int8", detector_spec()),
        ("estimator", "fp32", estimator_spec()),
    ):
        meta = {
            p.key: p.value for p in onnx.load(str(tiny_art / f"{role}.{prec}.onnx")).metadata_props
        }
        assert m[role]["spec"] == json.loads(meta[METADATA_KEY]) == json.loads(spec.to_json())
        assert m[role]["precision"] == prec and (dist / m[role]["url"][2:]).is_file()
    for k in ("module", "mjs", "wasm"):
        assert (dist / m["ort"][k][2:]).is_file()
    assert m["ort"]["version"] == "1.30.0"


@needs_ort
def test_rebuild_replaces_previous_build(dist, tiny_art, tmp_path):
    out = tmp_path / "d"
    first = build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=out))
    second = build(BuildConfig(art=tiny_art, detector="fp32", estimator="fp32", out=out))
    assert first.version != second.version
    assert not any(p.name.startswith("detector.int8") for p in out.iterdir())
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp folders left behind


@needs_ort
def test_failed_build_leaves_dist_untouched(dist, tiny_art, tmp_path):
    out = tmp_path / "d"
    build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=out))
    before = sorted(p.name for p in out.iterdir())
    art = tmp_path / "art"
    shutil.copytree(tiny_art, art)
    (art / "estimator.fp32.onnx").write_bytes(b"not onnx")
    with pytest.raises(HemoedgeError, match=r"estimator\.fp32\.onnx: (not a readable ONNX model|sha256)"):
        build(BuildConfig(art=art, detector="int8", estimator="fp32", out=out))
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "d"]


def test_missing_artifact(tmp_path):
    with pytest.raises(HemoedgeError, match="not an artifact folder"):
        build(
            BuildConfig(
                art=tmp_path / "nope", detector="int8", estimator="fp32", out=tmp_path / "d"
            )
        )
    assert not (tmp_path / "d").exists()


def test_missing_precision(tiny_art, tmp_path):
    with pytest.raises(HemoedgeError, match=r"no estimator\.fp16\.onnx in the artifact"):
        build(BuildConfig(art=tiny_art, detector="int8", estimator="fp16", out=tmp_path / "d"))


def test_model_without_spec_metadata(tiny_art, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(tiny_art, art)
    m = onnx.load(str(art / "detector.int8.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(art / "detector.int8.onnx"))
    from hemoedge.artifact import Artifact

    a = Artifact.load(art)  # record the changed file, so only the missing spec is wrong
    a.add_file("detector", "int8", a.files["detector.int8.onnx"].get("quantization"))
    a.save()
    with pytest.raises(HemoedgeError, match=r"no 'hemoedge\.spec' in metadata_props"):
        build(BuildConfig(art=art, detector="int8", estimator="fp32", out=tmp_path / "d"))


def test_refuses_to_replace_a_foreign_folder(tiny_art, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(HemoedgeError, match="not a previous webapp build"):
        build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=out))
    assert (out / "precious.txt").read_text() == "keep me"


def test_missing_onnxruntime_web(tiny_art, tmp_path):
    with pytest.raises(HemoedgeError, match="run `npm ci`"):
        build(
            BuildConfig(
                art=tiny_art,
                detector="int8",
                estimator="fp32",
                out=tmp_path / "d",
                ort_dist=tmp_path / "none",
            )
        )


def test_cli_exit_codes(tiny_art, tmp_path, monkeypatch, capsys):
    from hemoedge.cli import main

    assert (
        main(
            [
                "webapp",
                "build",
                "--art",
                str(tiny_art),
                "--variant",
                "det=int3,est=fp32",
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "unknown precision 'int3'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "hemoedge.export.onnx_export", None)  # import fails
    assert main(["webapp", "build", "--out", str(tmp_path / "d")]) == 2
    assert "no --art given and no default artifact available" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_icons_are_pngs():
    from hemoedge.web.build import icon_png

    for size, maskable in ((192, False), (512, True)):
        data = icon_png(size, maskable)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == size  # IHDR width
        import io

        from PIL import Image

        img = Image.open(io.BytesIO(data))
        img.load()  # decodes fully (written by Pillow)
        assert img.size == (size, size) and img.mode == "RGBA"


def _eval_results(path, fp16_mae: float):
    from hemoedge.report.results import Results

    r = Results()
    r.add("acc.e2e.hb_mae", "det=int8,est=fp32", 0.765, "g/dL", "lower")
    r.add("acc.e2e.hb_mae", "det=int8,est=fp16", fp16_mae, "g/dL", "lower")
    return r.save(path)


def test_fp16_estimator_decision(tmp_path):
    from hemoedge.web.build import fp16_estimator_within

    ok, why = fp16_estimator_within(_eval_results(tmp_path / "a.json", 0.770), "int8", 0.02)
    assert ok and "delta +0.005" in why and why.endswith("shipping est=fp16")
    ok, why = fp16_estimator_within(_eval_results(tmp_path / "b.json", 0.80), "int8", 0.02)
    assert not ok and why.endswith("keeping est=fp32")
    ok, why = fp16_estimator_within(_eval_results(tmp_path / "c.json", 0.77), "fp32", 0.02)
    assert not ok and "no finite acc.e2e.hb_mae for det=fp32,est=fp16" in why
    with pytest.raises(HemoedgeError, match="results file not found"):
        fp16_estimator_within(tmp_path / "none.json", "int8", 0.02)


@needs_ort
def test_cli_ships_fp16_estimator_and_checks_options(tmp_path, capsys):
    import webtiny as tiny

    from hemoedge.cli import main

    art = tiny.write_artifact(tmp_path / "art", precisions=("fp32", "fp16", "int8"))
    res = _eval_results(tmp_path / "r.json", 0.770)
    out = tmp_path / "d"
    argv = ["webapp", "build", "--art", str(art), "--variant", "det=int8,est=fp32",
            "--out", str(out)]
    assert main([*argv, "--fp16-estimator-within", "0.02", "--results", str(res),
                 "--base", "/team/hemo/"]) == 0
    text = capsys.readouterr().out
    assert "shipping est=fp16" in text and "--base /team/hemo/" in text
    bm = json.loads((out / "build-manifest.json").read_text())
    assert bm["variant"] == "det=int8,est=fp16" and bm["base"] == "/team/hemo/"
    assert "/team/hemo/sw.js" in (out / "_headers").read_text()
    assert main([*argv, "--fp16-estimator-within", "0.02"]) == 2
    assert "needs --results" in capsys.readouterr().err
    assert main([*argv, "--base", "team/hemo"]) == 2
    assert "bad --base 'team/hemo'" in capsys.readouterr().err
    assert main([*argv, "--no-compress"]) == 0
    assert not list(out.glob("*.br")) and not list(out.glob("*.gz"))


def test_the_apps_default_cadence_is_the_builds():
    """app.js holds the detector cadence as a literal (the app reads no config before its first
    frame); it must be the one the build, auto-tune and the tests use."""
    from hemoedge.web.build import DEFAULT_CADENCE, WEBAPP_DIR

    src = (WEBAPP_DIR / "src" / "app.js").read_text()
    assert f"intParam('detect_every', 1, CAPTURE.frames, {DEFAULT_CADENCE})" in src
