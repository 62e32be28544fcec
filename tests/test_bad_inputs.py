"""Bad input through every command, table-driven: each row is a command line, the exit code it
must give (2 bad input or environment, 1 a failed verdict, 0 handled and carried on), a fragment
of its message, and a check that nothing was written or changed (the case's whole folder is
compared file by file, contents and modes, before and after; only the paths a row names may
change). Every exit-2 row must also say it in exactly one line and never print a traceback.

The models are tiny ONNX graphs built in code (tests/onnx_tiny.py) plus, for the one parity row
that needs a PyTorch reference, a random estimator exported once per module."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_tiny import tiny_artifact, tiny_detector, tiny_estimator
from PIL import Image

from hemoedge.artifact import Artifact
from hemoedge.data.yakimov import COLUMNS

READ_ONLY = Path("/sys/hemoedge-bad-input")  # the kernel refuses new files here, even to root
PHOTO_W, PHOTO_H = 160, 120
BOXES = [[10, 10, 40, 40], [10, 60, 40, 90], [50, 30, 80, 60]]  # top, left, bottom, right


# ------------------------------------------------------------------ builders

def _jpeg(w: int = PHOTO_W, h: int = PHOTO_H, seed: int = 0, exif: bytes | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _bomb_jpeg() -> bytes:
    """A JPEG whose frame header claims 30000 x 30000 pixels."""
    data = bytearray(_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    return bytes(data)


def _rotated_exif() -> bytes:
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90 degrees clockwise to display: upright it is 120 x 160
    return ex.tobytes()


def make_set(root: Path, patients: int = 12, sessions: int = 6, edit: Callable | None = None) -> Path:
    """A small Yakimov-layout set (3 nail + 3 skin boxes per photo); `edit(rows, photo_dir)`
    may spoil it."""
    (root / "photo").mkdir(parents=True)
    rows = []
    for i in range(patients):
        pid = f"{i + 1:04d}"
        (root / "photo" / f"{pid}.jpg").write_bytes(_jpeg(seed=i))
        rows.append({"PATIENT_ID": pid, "MEASUREMENT_DATE": f"2024-01-{i % sessions + 1:02d}",
                     "HB_LEVEL_GperL": str(90 + 5 * i), "NAIL_BOUNDING_BOXES": json.dumps(BOXES),
                     "SKIN_BOUNDING_BOXES": json.dumps(BOXES)})
    if edit:
        edit(rows, root / "photo")
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return root


def _row(i: int, **values) -> Callable:
    def edit(rows, photos):
        rows[i].update(values)
    return edit


def _rerecord(art_dir: Path, name: str) -> None:
    """Record a file's current state in the manifest, as a careless hand edit would."""
    art = Artifact.load(art_dir)
    f = art.files[name]
    art.files[name] = {**f, "sha256": hashlib.sha256((art_dir / name).read_bytes()).hexdigest(),
                       "bytes": (art_dir / name).stat().st_size}
    art.save()


def _nan_initializer(path: Path, name: str) -> None:
    m = onnx.load(str(path))
    for init in m.graph.initializer:
        if init.name == name:
            arr = onnx.numpy_helper.to_array(init).copy()
            arr.flat[0] = np.nan
            init.CopyFrom(onnx.numpy_helper.from_array(arr, name))
    onnx.save(m, str(path))


def _nan_output(src: Path, dst: Path) -> None:
    """The same graph with every output turned into NaN by 0/0 (its weights stay finite)."""
    m = onnx.load(str(src))
    out = m.graph.output[0].name
    for n in m.graph.node:
        n.output[:] = [f"{out}_pre" if o == out else o for o in n.output]
    h = onnx.helper
    m.graph.node.extend([h.make_node("Sub", [f"{out}_pre", f"{out}_pre"], ["z"]),
                         h.make_node("Div", ["z", "z"], ["nan"]),
                         h.make_node("Add", [f"{out}_pre", "nan"], [out])])
    onnx.save(m, str(dst))


def _budgets(path: Path) -> Path:
    path.write_text('[[budget]]\nname = "fp32 Hb MAE"\nkind = "absolute"\n'
                    'metric = "acc.hb_mae"\nvariant = "est=fp32"\nmax = 1.0\n')
    return path


def _results(path: Path, value, raw: str | None = None) -> Path:
    v = "null" if value is None else raw or json.dumps(value)
    path.write_text('{"schema": "hemoedge.results/1", "env": {}, "variants": {}, "commands": [],'
                    ' "metrics": [{"name": "acc.hb_mae", "variant": "est=fp32", "value": ' + v
                    + ', "unit": "g/dL", "better": "lower"}]}\n')
    return path


class _Evil:
    """Unpickling this creates a marker file: proof that the checkpoint's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ------------------------------------------------------------------ shared inputs (built once)

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-inputs-base")
    out = {"art": tiny_artifact(d / "art", precisions=("fp32", "int8")),
           "data": make_set(d / "data"),
           "det_onnx": tiny_detector(d / "tiny_det.onnx")}
    return out


@pytest.fixture(scope="module")
def est_art(tmp_path_factory, base) -> Path:
    """An artifact whose estimator has a PyTorch source (random weights), the detector adopted
    from a tiny ONNX file; its fp16 file outputs NaN (finite weights, recorded in the manifest)."""
    import torch

    from hemoedge.export.onnx_export import ExportConfig, export
    from hemoedge.models import estimator

    d = tmp_path_factory.mktemp("est art")  # a space: recorded commands must quote it
    torch.manual_seed(0)
    ckpt = estimator.save(estimator.Estimator(), d / "estimator.pt")
    art = d / "art with space"
    export(ExportConfig(out=art, detector=base["det_onnx"], estimator=ckpt, simplifier="none",
                        check_images=1))
    _nan_output(art / "estimator.fp32.onnx", art / "estimator.fp16.onnx")
    a = Artifact.load(art)
    a.add_file("estimator", "fp16")
    a.save()
    return art


# ------------------------------------------------------------------ the table

@dataclass
class Case:
    id: str
    setup: Callable[[Path, dict], list[str]]  # (case folder, shared inputs) -> argv
    code: int
    fragment: str
    may_change: tuple[str, ...] = ()  # paths (relative to the case folder) allowed to change
    stream: str = ""  # where the fragment is printed: "err" or "out" (default: err for exit 2)
    needs: tuple[str, ...] = ()  # extra module fixtures (e.g. "est_art"), watched as well


def art(w: Path, b: dict, name: str = "art") -> Path:
    return Path(shutil.copytree(b["art"], w / name))


def data(w: Path, b: dict, edit: Callable | None = None) -> Path:
    return make_set(w / "data", edit=edit) if edit else Path(shutil.copytree(b["data"], w / "data"))


def _replace(src: str, dst: str, rerecord: bool = False, empty: bool = False,
             truncate: bool = False, cmd: tuple[str, ...] = ()) -> Callable:
    def setup(w, b):
        a = art(w, b)
        if empty:
            (a / dst).write_bytes(b"")
        elif truncate:
            (a / dst).write_bytes((a / src).read_bytes()[:200])
        else:
            shutil.copyfile(a / src, a / dst)
        if rerecord:
            _rerecord(a, dst)
        return [c.format(art=a, data=data(w, b) if "{data}" in c else "") for c in cmd]
    return setup


def _spec_without_preprocess(cmd: tuple[str, ...]) -> Callable:
    def setup(w, b):
        a = art(w, b)
        m = json.loads((a / "manifest.json").read_text())
        del m["models"]["estimator"]["spec"]["preprocess"]
        (a / "manifest.json").write_text(json.dumps(m))
        return [c.format(art=a) for c in cmd]
    return setup


def _check(edit: Callable | None) -> Callable:
    return lambda w, b: ["data", "check", str(data(w, b, edit))]


def _truncate(p: Path) -> None:
    """Cut a JPEG after its headers: it opens (size known), but does not decode."""
    b = p.read_bytes()
    p.write_bytes(b[:len(b) * 2 // 3])


def _truncate_photo(i: int) -> Callable:
    def edit(rows, photos):
        _truncate(photos / f"{rows[i]['PATIENT_ID']}.jpg")
    return edit


def _photo(i: int, content: bytes) -> Callable:
    def edit(rows, photos):
        (photos / f"{rows[i]['PATIENT_ID']}.jpg").write_bytes(content)
    return edit


def _all_photos(content: bytes) -> Callable:
    def edit(rows, photos):
        for r in rows:
            (photos / f"{r['PATIENT_ID']}.jpg").write_bytes(content)
    return edit


def _rotated_box_outside(rows, photos):
    """Stored 160 x 120 with EXIF orientation 6: upright (what the app sees) 120 x 160, so a
    box reaching x = 150 lies outside the upright photo."""
    (photos / f"{rows[0]['PATIENT_ID']}.jpg").write_bytes(_jpeg(exif=_rotated_exif()))
    rows[0]["NAIL_BOUNDING_BOXES"] = json.dumps([[10, 10, 40, 40], [10, 60, 40, 90],
                                                 [50, 120, 80, 150]])


def _dup(rows, photos):
    rows[5]["PATIENT_ID"] = rows[4]["PATIENT_ID"]


def _traversal(pid: str) -> Callable:
    def edit(rows, photos):
        rows[0]["PATIENT_ID"] = pid
    return edit


def _evil_detector(w, b):
    import torch

    torch.save({"model": _Evil(w / "code-ran")}, w / "evil.pt")
    return ["export", "--detector", str(w / "evil.pt"), "--out", str(w / "out")]


def _nan_estimator_ckpt(w, b):
    import torch

    from hemoedge.models import estimator

    m = estimator.Estimator()
    with torch.no_grad():
        m.head.weight[0, 0] = float("nan")
    estimator.save(m, w / "nan.pt", half=False)
    return ["export", "--detector", str(b["det_onnx"]), "--estimator", str(w / "nan.pt"),
            "--out", str(w / "out")]


def _nan_onnx_detector(w, b):
    p = tiny_detector(w / "nan_det.onnx")
    _nan_initializer(p, "W")
    return ["export", "--detector", str(p), "--out", str(w / "out")]


def _nan_weights_in_art(cmd: tuple[str, ...]) -> Callable:
    def setup(w, b):
        a = art(w, b)
        _nan_initializer(a / "estimator.int8.onnx", "G")
        _rerecord(a, "estimator.int8.onnx")
        return [c.format(art=a, data=data(w, b) if "{data}" in c else "") for c in cmd]
    return setup


def _nan_output_in_art(w, b):
    """est=int8 outputs NaN from finite weights (the manifest re-recorded): eval must say so in
    one line, not die in scikit-learn."""
    a = art(w, b)
    _nan_output(a / "estimator.fp32.onnx", a / "estimator.int8.onnx")
    _rerecord(a, "estimator.int8.onnx")
    return ["eval", str(a), "--data", str(data(w, b))]


def _gate(first, second=None, raw: str | None = None) -> Callable:
    def setup(w, b):
        files = [_results(w / "a.json", first, raw)]
        if second is not None:
            files.append(_results(w / "b.json", second))
        return ["gate", *map(str, files), "--budgets", str(_budgets(w / "budgets.toml")),
                "--baseline", str(w / "no-baseline.json")]
    return setup


def _sources_onnx(w, b):
    a = art(w, b)
    m = json.loads((a / "manifest.json").read_text())
    for role in ("detector", "estimator"):
        m["models"][role]["source"] = {"path": str(w / f"{role}.onnx"), "sha256": "x"}
    (a / "manifest.json").write_text(json.dumps(m))
    return ["parity", str(a), "--images", "1"]


def _no_models(w, b):
    a = w / "art"
    a.mkdir()
    (a / "manifest.json").write_text(json.dumps({"schema": "hemoedge.artifact/1", "models": {},
                                                 "files": {}, "versions": {}}))
    return ["parity", str(a), "--images", "1"]


def _eval_skips_photo(w, b):
    from hemoedge.data import yakimov

    d = data(w, b)
    test = yakimov.split(yakimov.load(d).records)["test"]
    _truncate(test[0].photo)
    return ["eval", str(art(w, b)), "--data", str(d)]


def _file(w: Path, name: str = "a-file") -> Path:
    (w / name).write_text("keep me\n")
    return w / name


def _report_results(w):
    return str(_results(w / "r.json", 0.5))


CASES = [
    # code never runs from a checkpoint; shards never override each other
    Case("export pickled detector without --trust-checkpoint", _evil_detector, 2,
         "--trust-checkpoint"),
    Case("gate: a second file repeats a failing metric with a better value",
         _gate(2.0, 0.5), 2, "conflicts with"),
    # non-finite numbers are a failure, never a pass
    Case("export an estimator checkpoint with NaN weights", _nan_estimator_ckpt, 2,
         "non-finite"),
    Case("export an ONNX detector with a NaN weight", _nan_onnx_detector, 2, "non-finite"),
    Case("parity: an fp16 estimator that outputs NaN fails (never 'ok ... nan')",
         lambda w, b: ["parity", str(b["est_art"]), "--images", "1"], 1,
         "non-finite hb_max_abs", may_change=("<est_art>/results.json",), stream="out",
         needs=("est_art",)),
    Case("eval: an artifact file with NaN weights (re-recorded in the manifest)",
         _nan_weights_in_art(("eval", "{art}", "--data", "{data}")), 2, "non-finite"),
    Case("eval: an estimator whose outputs are NaN (finite weights)", _nan_output_in_art, 2,
         "not finite"),
    Case("bench cpu: an artifact file with NaN weights",
         _nan_weights_in_art(("bench", "cpu", "{art}", "--quick", "--threads", "1")), 2,
         "non-finite"),
    Case("gate: the judged metric is null (NaN)", _gate(None), 2, "not a finite number"),
    Case("gate: a NaN literal in a results file", _gate(0.0, raw="NaN"), 2, "NaN"),
    Case("gate: an Infinity literal in a results file", _gate(0.0, raw="Infinity"), 2,
         "non-finite figure"),
    # corrupt or changed model files: checked against the manifest by every reader
    Case("quantize: 0-byte detector.fp32.onnx",
         _replace("", "detector.fp32.onnx", empty=True,
                  cmd=("quantize", "{art}", "--variants", "fp16", "--roles", "detector")),
         2, "empty file (0 bytes)"),
    Case("quantize: 0-byte detector.fp32.onnx, sha256 re-recorded",
         _replace("", "detector.fp32.onnx", empty=True, rerecord=True,
                  cmd=("quantize", "{art}", "--variants", "fp16", "--roles", "detector")),
         2, "not an ONNX model"),
    Case("quantize: truncated estimator.fp32.onnx, sha256 re-recorded",
         _replace("estimator.fp32.onnx", "estimator.fp32.onnx", truncate=True, rerecord=True,
                  cmd=("quantize", "{art}", "--variants", "fp16", "--roles", "estimator")),
         2, "not an ONNX model, or truncated"),
    Case("quantize: truncated estimator.fp32.onnx",
         _replace("estimator.fp32.onnx", "estimator.fp32.onnx", truncate=True,
                  cmd=("quantize", "{art}", "--variants", "fp16")), 2, "sha256"),
    Case("parity: an int8 file replaced by another model",
         _replace("estimator.fp32.onnx", "detector.int8.onnx", cmd=("parity", "{art}")), 2,
         "detector.int8.onnx: sha256"),
    Case("eval: an int8 file replaced by another model",
         _replace("estimator.fp32.onnx", "detector.int8.onnx",
                  cmd=("eval", "{art}", "--data", "{data}")), 2, "detector.int8.onnx: sha256"),
    Case("bench cpu: an int8 file replaced by another model",
         _replace("estimator.fp32.onnx", "detector.int8.onnx",
                  cmd=("bench", "cpu", "{art}", "--quick")), 2, "detector.int8.onnx: sha256"),
    Case("webapp build: an int8 file replaced by another model",
         _replace("estimator.fp32.onnx", "detector.int8.onnx",
                  cmd=("webapp", "build", "--art", "{art}", "--variant", "det=int8,est=fp32",
                       "--out", "{art}/../dist")), 2, "detector.int8.onnx: sha256"),
    Case("bench cpu: a file the manifest lists is missing",
         lambda w, b: [(art(w, b) / "estimator.int8.onnx").unlink(), "bench", "cpu",
                       str(w / "art"), "--quick"][1:], 2, "but missing"),
    Case("webapp build: manifest spec without preprocess",
         _spec_without_preprocess(("webapp", "build", "--art", "{art}", "--out",
                                   "{art}/../dist")), 2, "spec is malformed"),
    Case("quantize: manifest spec without preprocess",
         _spec_without_preprocess(("quantize", "{art}", "--variants", "fp16")), 2,
         "spec is malformed"),
    Case("quantize: manifest.json is not JSON",
         lambda w, b: [(art(w, b) / "manifest.json").write_text("{oops"), "quantize",
                       str(w / "art"), "--variants", "fp16"][1:], 2, "not valid JSON"),
    Case("bench cpu --model: a 0-byte ONNX file",
         lambda w, b: [(w / "m.onnx").write_bytes(b""), "bench", "cpu", "--model",
                       str(w / "m.onnx"), "--quick"][1:], 2, "empty"),
    Case("export --detector: a 0-byte ONNX file says empty, not 'opset None'",
         lambda w, b: [(w / "d.onnx").write_bytes(b""), "export", "--detector",
                       str(w / "d.onnx"), "--out", str(w / "out")][1:], 2,
         "empty file (0 bytes), not an ONNX model"),
    # parity that would check nothing
    Case("parity: manifest with no models", _no_models, 2, "would check nothing"),
    Case("parity: every model adopted from ONNX (no PyTorch reference)", _sources_onnx, 2,
         "would check nothing"),
    # photos: decoded in full, every problem per row, a count at the end
    Case("data check: a truncated JPEG (its header is whole)", _check(_truncate_photo(0)), 1,
         "photo/0001.jpg: not a readable image (OSError: image file is truncated"),
    Case("data check: a box holding Infinity",
         _check(_row(1, NAIL_BOUNDING_BOXES='[[1, 2, 30, Infinity], [1, 2, 3, 4], [1, 2, 3, 4]]')),
         1, "4 finite numbers"),
    Case("data check: a box holding NaN",
         _check(_row(1, SKIN_BOUNDING_BOXES='[[1, 2, 30, NaN], [1, 2, 3, 4], [1, 2, 3, 4]]')),
         1, "4 finite numbers"),
    Case("data check: a JPEG header claiming 30000 x 30000",
         _check(_photo(2, _bomb_jpeg())), 1, "DecompressionBombError"),
    Case("data check: every photo's header claims 30000 x 30000",
         _check(_all_photos(_bomb_jpeg())), 2, "no usable rows"),
    Case("data check: a photo that is not an image", _check(_photo(3, b"GIF89a nonsense")), 1,
         "not a readable image"),
    Case("data check: EXIF orientation decides the photo's size",
         _check(_rotated_box_outside), 1, "outside the 120x160 photo"),
    Case("data check: the final count", _check(_truncate_photo(0)), 1, "1 problem(s) in 12 rows",
         stream="out"),
    Case("data check: a CSV header without the box columns",
         lambda w, b: [(d := data(w, b)) / "metadata.csv",
                       (d / "metadata.csv").write_text("PATIENT_ID,HB_LEVEL_GperL\n0001,120\n"),
                       "data", "check", str(d)][2:], 2, "missing columns"),
    Case("data check: a CSV that is not UTF-8",
         lambda w, b: [(d := data(w, b)) / "metadata.csv",
                       (d / "metadata.csv").write_bytes(b"\xff\xfe\x00bad\n"),
                       "data", "check", str(d)][2:], 2, "not a readable CSV"),
    Case("parity: a truncated photo in the test split is skipped and counted",
         lambda w, b: ["parity", str(b["est_art"]), "--images", "3",
                       "--data", _eval_skips_photo(w, b)[-1]], 1, "skipped 1 row(s)/photo(s)",
         may_change=("<est_art>/results.json",), needs=("est_art",)),
    Case("data check: a clean set passes", _check(None), 0, "no problems"),
    Case("eval: a truncated photo in the test split is skipped and counted", _eval_skips_photo,
         0, "skipped 1 photo(s)", may_change=("art/results.json",), stream="out"),
    # rows the loader refuses, naming the row
    Case("loader: duplicate PATIENT_ID", _check(_dup), 1, "occurs on 2 rows"),
    Case("loader: Hb in g/dL in the g/L column", _check(_row(2, HB_LEVEL_GperL="13.2")), 1,
         "g/dL value in the g/L column"),
    Case("loader: Hb that is NaN", _check(_row(2, HB_LEVEL_GperL="nan")), 1,
         "not a finite number"),
    Case("loader: 2 boxes instead of 3",
         _check(_row(3, NAIL_BOUNDING_BOXES=json.dumps(BOXES[:2]))), 1, "exactly 3"),
    Case("loader: 4 boxes instead of 3",
         _check(_row(3, SKIN_BOUNDING_BOXES=json.dumps([*BOXES, BOXES[0]]))), 1, "exactly 3"),
    Case("loader: boolean box values",
         _check(_row(4, NAIL_BOUNDING_BOXES="[[true, 1, 30, 30], [1, 2, 30, 40], [1, 2, 30, 40]]")),
         1, "4 finite numbers"),
    Case("loader: string box values",
         _check(_row(4, NAIL_BOUNDING_BOXES='[["1", 1, 30, 30], [1, 2, 30, 40], [1, 2, 30, 40]]')),
         1, "4 finite numbers"),
    Case("loader: PATIENT_ID with ../", _check(_traversal("../../etc/passwd")), 1,
         "path separator"),
    Case("loader: PATIENT_ID with a backslash", _check(_traversal("..\\0001")), 1,
         "path separator"),
    # one line, exit 2, nothing half-written: output paths
    Case("export --out is a file",
         lambda w, b: ["export", "--out", str(_file(w))], 2, "is not a folder"),
    Case("export --out under a read-only location",
         lambda w, b: ["export", "--out", str(READ_ONLY / "art")], 2, "not writable"),
    Case("report --html is a folder",
         lambda w, b: ["report", _report_results(w), "--html", str(w)], 2, "is a folder"),
    Case("report --html below a file",
         lambda w, b: ["report", _report_results(w), "--html", str(_file(w) / "r.html")], 2,
         "is a file, not a folder"),
    Case("gate --junit is a folder",
         lambda w, b: [*_gate(0.5)(w, b), "--junit", str(w)], 2, "is a folder"),
    Case("gate --junit under a read-only location",
         lambda w, b: [*_gate(0.5)(w, b), "--junit", str(READ_ONLY / "g.xml")], 2,
         "not writable"),
    Case("eval --results is a folder (checked before any work)",
         lambda w, b: ["eval", str(art(w, b)), "--data", str(w / "no-such-data"),
                       "--results", str(w)], 2, "is a folder"),
    Case("eval --results under a read-only location",
         lambda w, b: ["eval", str(art(w, b)), "--results", str(READ_ONLY / "r.json")], 2,
         "not writable"),
    Case("data synth --out is a file",
         lambda w, b: ["data", "synth", "--out", str(_file(w)), "--patients", "2"], 2,
         "is not a folder"),
    # arguments
    Case("data synth --seed -1",
         lambda w, b: ["data", "synth", "--out", str(w / "s"), "--seed", "-1"], 2, "seed >= 0"),
    Case("data synth --patients 0",
         lambda w, b: ["data", "synth", "--out", str(w / "s"), "--patients", "0"], 2, ">= 1"),
    Case("parity --images 0", lambda w, b: ["parity", str(art(w, b)), "--images", "0"], 2,
         "--images"),
    Case("webapp serve --port 70000",
         lambda w, b: ["webapp", "serve", str(w), "--port", "70000"], 2, "1-65535"),
    Case("bench cpu --threads 0",
         lambda w, b: ["bench", "cpu", str(art(w, b)), "--threads", "0"], 2, ">= 1"),
    Case("data video --hb nan",
         lambda w, b: ["data", "video", "--out", str(w / "v.y4m"), "--hb", "nan"], 2,
         "finite number"),
    # smaller
    Case("bench cpu --model writes nothing beside the model",
         lambda w, b: ["bench", "cpu", "--model", str(tiny_estimator(w / "est.onnx")), "--quick",
                       "--threads", "1"], 0, "not written", stream="out"),
]


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                             stat.S_IMODE(p.stat().st_mode))
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = ("dir", 0)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, base, request, capsys):
    from hemoedge.cli import main

    shared = dict(base)
    for name in case.needs:
        shared[name] = request.getfixturevalue(name)
    work = tmp_path / "case"
    work.mkdir()
    argv = case.setup(work, shared)
    capsys.readouterr()
    watched = [work] + [shared[n] for n in case.needs]
    before = [_snapshot(p) for p in watched]
    marker = work / "code-ran"

    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()

    assert code == case.code, f"exit {code}, want {case.code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in out + err
    text = err if (case.stream or ("err" if case.code == 2 else "out")) == "err" else out
    assert case.fragment in text, f"{case.fragment!r} not in:\n{text[-2000:]}"
    if code == 2:
        errors = [ln for ln in err.splitlines() if ln.startswith("hemoedge") and "error:" in ln]
        assert len(errors) == 1, err
        assert case.fragment in errors[0]
    assert not marker.exists(), "the checkpoint's code ran"
    for root, old in zip(watched, before, strict=True):
        new = _snapshot(root)
        allowed = {m.split("/", 1)[1] if m.startswith("<") else m for m in case.may_change}
        changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)} - allowed
        assert not changed, f"changed under {root}: {sorted(changed)}"
    if "ok  " in out:  # parity's passing lines never carry a non-finite figure
        assert not any(ln.startswith("ok") and "nan" in ln for ln in out.splitlines())


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


# ------------------------------------------------------------------ beyond the command lines

def test_parity_quotes_a_path_with_spaces(est_art, capsys):
    """The recorded command of a parity run on a path with a space can be pasted back."""
    import shlex

    from hemoedge.cli import main

    main(["parity", str(est_art), "--images", "1"])
    cmds = json.loads((est_art / "results.json").read_text())["commands"]
    assert shlex.join(["hemoedge", "parity", str(est_art), "--images", "1"]) in cmds
    assert shlex.split(cmds[-1])[2] == str(est_art)


def test_results_and_manifest_files_get_umask_modes(tmp_path):
    from hemoedge.report.results import Results

    old = os.umask(0o022)
    try:
        p = Results().save(tmp_path / "results.json")
        a = Artifact(tmp_path / "art")
        m = a.save()
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE(m.stat().st_mode) == 0o644


def test_read_rgb_applies_exif_orientation_like_create_image_bitmap(tmp_path):
    from PIL import ImageOps

    from hemoedge.data.yakimov import open_image, photo_size, read_rgb

    p = tmp_path / "rot.jpg"
    p.write_bytes(_jpeg(exif=_rotated_exif()))
    img = read_rgb(p)
    with Image.open(p) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert img.shape == (PHOTO_W, PHOTO_H, 3) and np.array_equal(img, want)
    assert photo_size(p) == photo_size(p, decode=True) == (PHOTO_H, PHOTO_W)
    with open_image(p) as im:  # what training reads sizes from: the upright photo too
        assert im.size == (PHOTO_H, PHOTO_W)


def test_truncated_and_bomb_photos_are_data_errors(tmp_path):
    from hemoedge.data.yakimov import read_rgb
    from hemoedge.errors import DataError

    (tmp_path / "t.jpg").write_bytes(_jpeg())
    _truncate(tmp_path / "t.jpg")
    (tmp_path / "b.jpg").write_bytes(_bomb_jpeg())
    with pytest.raises(DataError, match=r"t\.jpg: not a readable image .*truncated"):
        read_rgb(tmp_path / "t.jpg")
    with pytest.raises(DataError, match=r"b\.jpg: not a readable image \(DecompressionBomb"):
        read_rgb(tmp_path / "b.jpg")


def test_multi_line_errors_become_one_line(capsys, monkeypatch):
    from hemoedge import cli
    from hemoedge.errors import HemoedgeError

    def boom(args):
        raise HemoedgeError("x.onnx: first line\n  second line\n\nthird")

    monkeypatch.setattr(cli, "_handler", lambda module, func="cli": boom)
    cli._parser.cache_clear()
    try:
        assert cli.main(["report", "r.json"]) == 2
    finally:
        cli._parser.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hemoedge: error: x.onnx: first line; second line; third"]


def test_merging_identical_nan_shards_is_not_a_conflict(tmp_path):
    from hemoedge.report.results import merge

    a, b = _results(tmp_path / "a.json", None), _results(tmp_path / "b.json", None)
    assert len(merge([a, b]).metrics) == 1
