"""`hemoedge sweep`: entry parsing, the measured feasibility checks, and the orchestration
(resume after an interruption, shards, relabelled merged results).

The orchestration tests run the sweep with a stand-in stage runner that writes small real
files (an artifact, results files) instead of training and benchmarking: the real stages run
end to end in `make test` (`hemoedge sweep --quick`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hemoedge.cli import main
from hemoedge.errors import HemoedgeError
from hemoedge.report.results import Results
from hemoedge.sweep import (
    DEFAULT_ENTRIES,
    Entry,
    EntryDir,
    Sweep,
    SweepConfig,
    collect,
    feasibility,
    merge_sweeps,
    relabel,
)


def test_entry_labels_and_parsing():
    assert Entry.parse("efficientnet_b0") == Entry("efficientnet_b0")
    assert Entry.parse("mobilenetv3_small_100@192").size == 192
    e = Entry.parse("resnet18@160:cls")
    assert (e.backbone, e.size, e.task) == ("resnet18", 160, "classification")
    assert e.label == "resnet18@160:cls"
    assert Entry.parse("resnet18:reg").label == "resnet18"
    for bad in ("resnet18@abc", "resnet18@200", "resnet18:segment", "@224"):
        with pytest.raises(HemoedgeError):
            Entry.parse(bad)


def test_default_list_covers_the_seed_work():
    labels = {e.label for e in DEFAULT_ENTRIES}
    assert {"mobilenetv4_conv_small", "efficientnet_b0", "tf_efficientnetv2_b0",
            "mobilenetv3_small_100", "mobilenetv3_small_100@192", "resnet18:cls",
            "mobilenetv1_100:cls", "legacy_xception:cls", "resnet50:cls", "vgg16:cls"} <= labels


def test_duplicate_entries_are_refused(tmp_path):
    with pytest.raises(HemoedgeError, match="twice"):
        SweepConfig(out=tmp_path, entries=(Entry("resnet18"), Entry.parse("resnet18:reg")))


def test_feasibility_skips_by_measured_size_and_projected_time(tmp_path):
    too_big = feasibility(Entry("resnet18"), SweepConfig(out=tmp_path, max_model_mb=20), 1000)
    assert not too_big["ok"] and "--max-model-mb" in too_big["reason"]
    assert too_big["params_m"] == pytest.approx(11.18, abs=0.05)  # resnet18 without its fc
    slow = feasibility(Entry("mobilenetv3_small_050"),
                       SweepConfig(out=tmp_path, max_train_min=1e-4), 320)
    assert not slow["ok"] and "projected fine-tuning" in slow["reason"]
    assert slow["step_s"] > 0 and slow["projected_train_s"] == pytest.approx(
        slow["step_s"] * (320 // 32) * 5)
    ok = feasibility(Entry("mobilenetv3_small_050"), SweepConfig(out=tmp_path), 64)
    assert ok["ok"] and ok["reason"] == ""
    unknown = feasibility(Entry("no_such_net"), SweepConfig(out=tmp_path), 64)
    assert not unknown["ok"] and "no_such_net" in unknown["reason"]


# ------------------------------------------------------------------ orchestration

class FakeStages:
    """Stands in for the stages: records each stage call (`stages` holds the Stage, `calls`
    the argv of the command it records), writes what the next stage reads."""

    def __init__(self, art: Path, fail_on: str | None = None):
        self.art = art
        self.calls: list[list[str]] = []
        self.stages: list = []
        self.fail_on = fail_on

    def __call__(self, stage) -> int:
        self.stages.append(stage)
        argv = stage.argv
        self.calls.append(argv)
        stage = argv[0] if argv[0] != "bench" else f"bench {argv[1]}"
        if stage == self.fail_on:
            self.fail_on = None
            raise KeyboardInterrupt  # the session ended mid-stage
        opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
        if stage == "train":
            out = Path(opt["--out"])
            out.mkdir(parents=True, exist_ok=True)
            (out / "estimator.pt").write_bytes(b"stand-in")
        elif stage == "export":
            shutil.copytree(self.art, opt["--out"])
        elif "--results" in opt:
            res = Results()
            res.add(f"{stage.replace(' ', '.')}.figure", "est=fp32", 1.0)
            res.add("web.frame_ms.p50", "det=fp32,est=fp32", 30.0, "ms", "lower", threads=2)
            res.save(opt["--results"])
        return 0


def _cfg(tmp_path, tiny_data, tiny_art, **kw) -> SweepConfig:
    entries = (Entry("mobilenetv3_small_050"), Entry("mobilenetv3_small_050", task="classification"),
               Entry("resnet18", task="classification"))
    return SweepConfig(out=tmp_path / "sweep", entries=entries, data=tiny_data, quick=True,
                       detector_art=tiny_art, det_precision="fp32", **kw)


def test_sweep_resumes_after_an_interruption(tmp_path, tiny_data, tiny_art):
    cfg = _cfg(tmp_path, tiny_data, tiny_art, max_model_mb=20)  # resnet18 (45 MB) is skipped
    first = FakeStages(tiny_art, fail_on="bench cpu")
    with pytest.raises(KeyboardInterrupt):
        Sweep(cfg, first, say=lambda s: None).run()
    assert [c[0] for c in first.calls] == ["train", "export", "quantize", "parity", "eval",
                                            "bench"]
    d = EntryDir(cfg.out, cfg.entries[0])
    assert d.done("eval") and not d.done("bench cpu")

    again = FakeStages(tiny_art)
    res, failed = Sweep(cfg, again, say=lambda s: None).run()
    assert failed == 0
    ran = [" ".join(c[:2]) if c[0] == "bench" else c[0] for c in again.calls]
    # entry 1 continues at the interrupted stage; entry 2 trains only its head on entry 1's
    # backbone; resnet18 never starts
    assert ran[:2] == ["bench cpu", "bench web"]
    train2 = again.calls[2]
    assert train2[0] == "train" and train2[train2.index("--est-epochs") + 1] == "0"
    assert train2[train2.index("--est-init") + 1] == str(d.train / "estimator.pt")
    assert not any("resnet18" in " ".join(c) for c in again.calls)

    entries = {e["label"]: e for e in res.env["sweep"]["entries"]}
    assert entries["mobilenetv3_small_050"]["status"] == "done"
    assert entries["mobilenetv3_small_050:cls"]["status"] == "done"
    assert entries["resnet18:cls"]["status"] == "skipped"
    assert "--max-model-mb" in entries["resnet18:cls"]["reason"]
    variants = {m.variant for m in res.metrics}
    assert "backbone=mobilenetv3_small_050:cls,det=fp32,est=fp32" in variants
    assert all(v.startswith("backbone=") for v in variants)
    assert res.get("sweep.params_m", "backbone=mobilenetv3_small_050").value == pytest.approx(
        0.56, abs=0.03)
    assert json.loads((cfg.out / "results.json").read_text())["schema"] == "hemoedge.results/1"

    # a third run has nothing left to do
    idle = FakeStages(tiny_art)
    Sweep(cfg, idle, say=lambda s: None).run()
    assert idle.calls == []


def test_shards_split_the_list_and_merge(tmp_path, tiny_data, tiny_art):
    results = []
    for i in (1, 2):
        cfg = _cfg(tmp_path / f"s{i}", tiny_data, tiny_art, shard=(i, 2), web=False)
        assert [e.label for e in cfg.mine()] == (
            ["mobilenetv3_small_050", "resnet18:cls"] if i == 1 else
            ["mobilenetv3_small_050:cls"])
        fake = FakeStages(tiny_art)
        Sweep(cfg, fake, say=lambda s: None).run()
        assert not any(c[:2] == ["bench", "web"] for c in fake.calls)  # web=False
        results.append(cfg.out / "results.json")
    merged = merge_sweeps(results)
    status = {e["label"]: e["status"] for e in merged.env["sweep"]["entries"]}
    assert status == {"mobilenetv3_small_050": "done", "mobilenetv3_small_050:cls": "done",
                      "resnet18:cls": "done"}
    assert {m.variant.split(",")[0] for m in merged.metrics} == {
        "backbone=mobilenetv3_small_050", "backbone=mobilenetv3_small_050:cls",
        "backbone=resnet18:cls"}


def test_a_failed_entry_is_reported_and_the_sweep_goes_on(tmp_path, tiny_data, tiny_art):
    cfg = _cfg(tmp_path, tiny_data, tiny_art, web=False)

    class Failing(FakeStages):
        def __call__(self, stage):
            if stage.label == "quantize" and "mobilenetv3_small_050-cls" in str(stage.config.art):
                return 2  # e.g. quantize_static refused the graph
            return super().__call__(stage)

    res, failed = Sweep(cfg, Failing(tiny_art), say=lambda s: None).run()
    assert failed == 1
    entries = {e["label"]: e for e in res.env["sweep"]["entries"]}
    assert entries["mobilenetv3_small_050:cls"]["status"] == "failed"
    assert "exit code 2" in entries["mobilenetv3_small_050:cls"]["reason"]
    assert entries["resnet18:cls"]["status"] == "done"


def test_relabel_and_collect_without_finished_entries(tmp_path):
    r = Results()
    r.add("acc.e2e.hb_mae", "det=int8,est=fp32", 0.8)
    r.add("cpu.peak", "", 1.0)
    r.variants["det=int8,est=fp32"] = {"detector": "detector.int8.onnx"}
    out = relabel(r, "resnet18:cls")
    assert [m.variant for m in out.metrics] == ["backbone=resnet18:cls,det=int8,est=fp32",
                                                "backbone=resnet18:cls"]
    assert list(out.variants) == ["backbone=resnet18:cls,det=int8,est=fp32"]
    res = collect(SweepConfig(out=tmp_path, entries=(Entry("resnet18"),)), {})
    assert res.metrics == []
    assert res.env["sweep"]["entries"][0]["status"] == "pending"


def test_cli_bad_backbone_spec_exits_2(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path), "--backbones", "resnet18@big"]) == 2
    assert "bad input size" in capsys.readouterr().err


def test_no_bench_then_the_benchmarks_on_one_machine(tmp_path, tiny_data, tiny_art):
    """The CI form: shards train and evaluate (--no-bench); one later run benchmarks every
    entry on one machine, so their latencies compare."""
    cfg = _cfg(tmp_path, tiny_data, tiny_art, bench=False)
    fake = FakeStages(tiny_art)
    res, _ = Sweep(cfg, fake, say=lambda s: None).run()
    assert not any(c[0] == "bench" for c in fake.calls)
    status = {e["label"]: (e["status"], e["reason"]) for e in res.env["sweep"]["entries"]}
    assert status["resnet18:cls"] == ("pending", "benchmarks not run yet")
    assert res.metrics == []

    full = SweepConfig(**{**cfg.__dict__, "bench": True})
    fake = FakeStages(tiny_art)
    res, _ = Sweep(full, fake, say=lambda s: None).run()
    assert {" ".join(c[:2]) for c in fake.calls} == {"bench cpu", "bench web"}
    assert len(fake.calls) == 6  # 3 entries x 2 benchmarks
    assert {e["status"] for e in res.env["sweep"]["entries"]} == {"done"}


def test_bad_inputs_exit_2_before_anything_is_written(tmp_path, tiny_data, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--quick", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert main(["sweep", "--quick", "--data", str(tiny_data), "--detector-art",
                 str(tmp_path / "no-art"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no metadata.csv" in err[0] and "not an artifact folder" in err[1]
    assert not out.exists()
