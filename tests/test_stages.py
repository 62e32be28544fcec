"""`hemoedge run`, `hemoedge sweep` and ci/prove_gate.py call the stages as a library
(hemoedge.stages): each stage gets its config, and the command recorded for it is the
`hemoedge ...` line built from that config, which the real parser reads back to the same
config."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from hemoedge import stages as st
from hemoedge.cli import _parser, argv_for
from hemoedge.pipeline_run import RunConfig, stages
from hemoedge.profile import QUICK
from hemoedge.report.results import Results
from hemoedge.sweep import Entry, EntryDir, Sweep, SweepConfig


def _config_from_command(stage: st.Stage):
    """The config the real command line makes of the stage's recorded command."""
    args = _parser().parse_args(stage.argv)
    if stage.label == "export":
        from hemoedge.export.onnx_export import config_from_args
    elif stage.label == "quantize":
        from hemoedge.quantize.run import config_from_args
    elif stage.label == "parity":
        from hemoedge.export.parity import config_from_args
    elif stage.label == "eval":
        from hemoedge.bench.accuracy import config_from_args
    elif stage.label == "bench cpu":
        from hemoedge.bench.cpu import config_from_args
    elif stage.label == "bench web":
        from hemoedge.bench.web import config_from_args
    elif stage.label == "web parity":
        from hemoedge.bench.webparity import config_from_args
    elif stage.label == "webapp":
        from hemoedge.web.build import BuildConfig, parse_variant

        det, est = parse_variant(args.variant)
        return BuildConfig(art=Path(args.art), detector=det, estimator=est, out=Path(args.out))
    else:  # data synth, train, report, choose, gate: each module maps its own arguments
        module = {"data": "hemoedge.data.synth", "train": "hemoedge.models.train",
                  "report": "hemoedge.report.html", "choose": "hemoedge.report.choose",
                  "gate": "hemoedge.gate"}[stage.label]
        config_from_args = importlib.import_module(module).config_from_args
    return config_from_args(args)


def _same_config(stage: st.Stage) -> None:
    got, want = _config_from_command(stage), stage.config
    ignore = {"command", "progress"}  # progress: whether stderr is a terminal
    for f in dataclasses.fields(want):
        if f.name not in ignore:
            assert getattr(got, f.name) == getattr(want, f.name), (stage.command, f.name)


@pytest.mark.parametrize("quick", [True, False])
def test_run_records_paste_able_commands_for_its_configs(quick, monkeypatch, tmp_path):
    monkeypatch.delenv("HEMOEDGE_DATA", raising=False)
    baseline = tmp_path / "baseline.json"
    Results().save(baseline)
    labels = []
    for s in stages(RunConfig(out=tmp_path / "run", quick=quick, baseline=baseline)):
        labels.append(s.label)
        assert s.command.startswith("hemoedge ")
        _same_config(s)
        if "command" in {f.name for f in dataclasses.fields(s.config)}:
            assert s.config.command == s.command  # what the stage itself records
    assert labels == ["data", "export", "quantize", "parity", "eval", "bench cpu", "bench web",
                      "web parity", "report", "choose", "webapp", "gate"]


def _at_default(cfg) -> list[str]:
    """The fields of a config that hold their default value."""
    def default(f):
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default  # MISSING (never equal to a value) when the field has no default
    return [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) == default(f)]


def test_stage_module_configs_parse_back_with_every_field_set(tmp_path):
    """data synth, train, report, choose and gate: each module's own config, every field away
    from its default, is recorded as a command the real parser and the module's
    config_from_args read back to the same config."""
    from hemoedge.data.synth import SynthConfig
    from hemoedge.gate import GateConfig
    from hemoedge.models.train import TrainConfig
    from hemoedge.report.choose import ChooseConfig, Constraints
    from hemoedge.report.html import ReportConfig

    res = [tmp_path / "a.json", tmp_path / "b.json"]
    cases = [
        st.synth(SynthConfig(out=tmp_path / "d", patients=7, sessions=3, seed=5)),
        st.train(TrainConfig(out=tmp_path / "t", data=tmp_path / "d", recipe="lip",
                             backbone="resnet18", only="estimator", det_epochs=2, est_epochs=3,
                             est_size=192, task="classification", anaemia_threshold=11.5,
                             est_init=str(tmp_path / "init.pt"), est_lr=1e-3, consistency=10.0,
                             feature_consistency=1.5, det_hours=0.5, seed=4)),
        st.report(ReportConfig(results=res, html=tmp_path / "r.html", md=tmp_path / "r.md")),
        st.choose(ChooseConfig(results=res, constraints=Constraints(
            target="cpu", max_frame_ms=30.0, max_hb_mae_delta=0.1, max_bytes=1e7,
            task="classification", max_hb_mae=1.2, max_hb_mae_over_best=0.2, min_auroc=0.8,
            max_auroc_drop=0.05, max_first_visit_mb=9.0, max_hb_shift=0.1,
            min_band_agreement=0.99), device_class="mid-range-phone",
            device="pixel-7", ep="webgpu")),
        st.gate(GateConfig(results=res, baseline=tmp_path / "base.json",
                           budgets=tmp_path / "b.toml", md=tmp_path / "g.md",
                           junit=tmp_path / "g.xml", benchmark_json=tmp_path / "g.json",
                           update_baseline=True)),
    ]
    for s in cases:
        assert _at_default(s.config) == [], s.label
        _same_config(s)
    assert _at_default(cases[3].config.constraints) == []
    assert cases[0].argv == ["data", "synth", "--out", str(tmp_path / "d"), "--patients", "7",
                             "--sessions", "3", "--seed", "5"]


def test_sweep_records_paste_able_commands_for_its_configs(tmp_path, monkeypatch):
    monkeypatch.delenv("HEMOEDGE_DATA", raising=False)
    for quick in (True, False):
        cfg = SweepConfig(out=tmp_path, quick=quick, data=tmp_path / "data")
        sw = Sweep(cfg, say=lambda s: None)
        e = Entry("resnet18", 192, "classification")
        d = EntryDir(cfg.out, e)
        for init in (None, tmp_path / "init.pt"):
            for stage in ("train", "export", "quantize", "parity", "eval", "bench cpu",
                          "bench web"):
                if stage == "export":
                    continue  # needs the detector artifact on disk; checked in run's test
                s = sw.stage(stage, e, d, tmp_path / "det", init)
                _same_config(s)
        train = sw.stage("train", e, d, tmp_path / "det", tmp_path / "init.pt")
        assert train.argv[train.argv.index("--est-epochs") + 1] == "0"
        assert train.argv[train.argv.index("--est-init") + 1] == str(tmp_path / "init.pt")
        web = sw.stage("bench web", e, d, tmp_path / "det", None)
        assert web.config.pairings[0] == ("int8", "fp32") and web.config.seed is False


def test_run_calls_the_stage_functions_with_their_configs(tmp_path, monkeypatch):
    """`hemoedge run` hands each stage its config (no argv); a stage that records no command
    of its own gets the equivalent command added once."""
    import hemoedge.pipeline_run as pr

    out = tmp_path / "run"
    got: list[tuple[str, object, dict]] = []

    def fake(label):
        def func(cfg, **kw):
            got.append((label, cfg, kw))
            if label == "eval":  # a stage that writes results and records its own command
                r = Results(commands=[cfg.command])
                r.add("acc.hb_mae", "est=fp32", 0.8)
                r.save(kw["results"])
            return 0
        return func

    real = pr.stages
    monkeypatch.setattr(pr, "stages", lambda cfg: [
        dataclasses.replace(s, func=fake(s.label)) for s in real(cfg)])
    assert pr.run(RunConfig(out=out, quick=True, gate=False)) == 0
    by = {label: (cfg, kw) for label, cfg, kw in got}
    assert by["quantize"][0] == QUICK.quantize_config(out / "art", out / "data")
    assert by["bench cpu"][0].runs == QUICK.bench_runs
    assert by["eval"][1] == {"results": out / "results.json"}
    assert by["bench web"][0].quick and by["bench web"][0].capture
    res = Results.load(out / "results.json")
    cmds = res.commands
    assert len(cmds) == len(set(cmds))
    assert cmds[0].startswith("hemoedge eval ") and "run" not in cmds[0].split()[1]
    assert any(c.startswith("hemoedge bench cpu ") and "--quick" in c for c in cmds)


def test_quantize_stage_calls_the_library(monkeypatch, tmp_path):
    from hemoedge.quantize import run as qrun

    seen = []
    monkeypatch.setattr(qrun, "run", lambda cfg, **kw: seen.append(cfg) or qrun.QuantizeResult())
    cfg = QUICK.quantize_config(tmp_path / "art", tmp_path / "data", roles=("estimator",))
    s = st.quantize(cfg)
    assert s() == 0 and seen == [cfg]
    assert s.argv == ["quantize", str(tmp_path / "art"), "--roles", "estimator", "--calib",
                      str(tmp_path / "data"), "--samples", "48", "--est-samples", "96",
                      "--val-samples", "8",
                      "--max-steps", "2", "--max-trials", "16"]


def test_eval_records_its_own_command_not_sys_argv(monkeypatch, tmp_path, tiny_art, tiny_data):
    """Inside `hemoedge run` eval records `hemoedge eval ...`, not the run's command line."""
    import sys

    from hemoedge.bench.accuracy import EvalConfig

    monkeypatch.setattr(sys, "argv", ["hemoedge", "run", "--quick"])
    art = tmp_path / "art"
    import shutil

    shutil.copytree(tiny_art, art)
    res = tmp_path / "results.json"
    s = st.evaluate(EvalConfig(art=art, data=tiny_data), res)
    s()
    assert Results.load(res).commands[0] == s.command == (
        f"hemoedge eval {art} --data {tiny_data} --results {res}")


def test_a_config_the_command_cannot_express_is_refused(tmp_path):
    from hemoedge.bench.accuracy import EvalConfig

    with pytest.raises(ValueError, match="map_conf"):
        st.evaluate(EvalConfig(art=tmp_path, map_conf=0.5))
    with pytest.raises(ValueError, match="no option"):
        argv_for(("eval",), {"art": "a", "nope": 1})


def test_stage_checks_its_outputs_before_running(tmp_path):
    from hemoedge.errors import HemoedgeError

    (tmp_path / "file").write_text("x")
    ran = []
    s = dataclasses.replace(st.report(st.ReportConfig(results=[tmp_path / "r.json"],
                                                      html=tmp_path / "file" / "r.html")),
                            func=lambda cfg: ran.append(cfg) or 0)
    with pytest.raises(HemoedgeError):
        s()
    assert ran == []


def test_a_stage_missing_from_the_build_is_listed_unavailable(tmp_path, monkeypatch):
    import hemoedge.pipeline_run as pr

    real = pr._available
    monkeypatch.setattr(pr, "_available", lambda m: m != "hemoedge.bench.web" and real(m))
    by = {s.label: s for s in pr.stages(RunConfig(out=tmp_path, quick=True, gate=False))}
    assert not by["bench web"].available() and by["bench cpu"].available()
    assert by["choose"].config.constraints.target == "cpu"


def test_sweep_train_stage_hands_train_its_recipe(tmp_path, monkeypatch, tiny_data):
    """The train stage (a config with the fields `hemoedge train` reads) reaches
    hemoedge.models.train.run with the entry's recipe."""
    from hemoedge.models import train as mod

    seen = {}

    def fake_run(recipe, data, out, seed=0, only=None):
        seen.update(recipe=recipe, data=data, out=out, seed=seed, only=only)
        return {}

    monkeypatch.setattr(mod, "run", fake_run)
    cfg = SweepConfig(out=tmp_path, quick=True, data=tiny_data, seed=3)
    e = Entry("mobilenetv3_small_050", 192, "classification")
    s = Sweep(cfg, say=lambda s: None).stage("train", e, EntryDir(tmp_path, e), tmp_path,
                                             tmp_path / "init.pt")
    assert s() == 0
    r = seen["recipe"]
    assert (r.backbone, r.est_size, r.task, r.est_epochs, r.est_init) == (
        "mobilenetv3_small_050", 192, "classification", 0, str(tmp_path / "init.pt"))
    assert (seen["data"], seen["seed"], seen["only"]) == (tiny_data, 3, "estimator")


def test_prove_gate_uses_the_quick_runs_stages(tmp_path, monkeypatch):
    """ci/prove_gate.py re-runs `hemoedge run --quick`'s own stage configs on its artifact;
    the injected capture regression is a config field with a command-line option."""
    import sys

    monkeypatch.delenv("HEMOEDGE_DATA", raising=False)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "ci"))
    import prove_gate

    art, data, res = tmp_path / "art", tmp_path / "data", tmp_path / "r.json"
    run = {s.label: s for s in stages(RunConfig(out=tmp_path / "x", quick=True, data=data,
                                                gate=False))}
    for label in ("eval", "bench cpu"):
        s = prove_gate.run_stage(label, art, data, res)
        assert s.config == dataclasses.replace(run[label].config, art=art, command=s.command)
        _same_config(s)
    web = prove_gate.run_stage("bench web", art, data, res, seedloop=True)
    assert web.config.seedloop and "--seedloop" in web.argv
    _same_config(web)
    sys.modules.pop("prove_gate", None)
