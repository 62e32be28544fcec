"""choose never mixes onnxruntime-web execution providers: a choice over the default (WASM)
figures leaves every ep= variant out; --ep NAME chooses among that provider's only; the report
shows the providers in a section of their own."""

from __future__ import annotations

from argparse import Namespace

import pytest
from report_fixtures import make_results

from hemoedge.errors import ResultsError
from hemoedge.report.choose import Constraints, choose, cli, for_ep
from hemoedge.report.results import Results

FAST_MS = 1.0  # a webgpu frame time far below every WASM one: it would win if mixed in


def with_webgpu(results: Results, ran: bool = True) -> Results:
    v = "det=int8,est=int8,ep=webgpu"
    results.add("web.ep.available", v, 1.0 if ran else 0.0, better="higher", ep="webgpu",
                threads=2, reason="" if ran else "webgpu: no adapter", adapter="swiftshader")
    if ran:
        results.add("web.frame_ms.p50", v, FAST_MS, unit="ms", better="lower", threads=2)
    return results


def test_default_choice_ignores_other_providers(results):
    mixed = choose(with_webgpu(results), Constraints(target="web", max_hb_mae_delta=0.05))
    assert mixed.recommended.variant == "det=int8,est=int8,ep=webgpu"  # what mixing would do
    ch = choose(for_ep(results, "wasm"), Constraints(target="web", max_hb_mae_delta=0.05))
    assert ch.ok and ch.recommended.variant == "det=int8,est=fp32"
    assert all("ep=" not in x.variant for x in [*ch.runners_up, *ch.rejected])


def test_choice_among_one_provider(results):
    ch = choose(for_ep(with_webgpu(results), "webgpu"),
                Constraints(target="web", max_hb_mae_delta=0.05))
    # accuracy and sizes are the pairing's, whatever runs it
    assert ch.recommended.variant == "det=int8,est=int8,ep=webgpu"
    assert ch.recommended.frame_ms == pytest.approx(FAST_MS)
    assert ch.recommended.hb_mae_delta is not None
    assert not ch.runners_up


def test_a_provider_not_measured_or_unavailable_is_a_clear_error(results):
    with pytest.raises(ResultsError, match="no web figures for execution provider 'webnn'"):
        for_ep(results, "webnn")
    with pytest.raises(ResultsError, match=r"webgpu was unavailable .*no adapter"):
        for_ep(with_webgpu(results, ran=False), "webgpu")


def test_cli_default_is_wasm(results, tmp_path, capsys):
    path = tmp_path / "results.json"
    with_webgpu(results).save(path)
    args = Namespace(results=str(path), target="web", max_frame_ms=None, max_hb_mae_delta=0.05)
    assert cli(args) == 0
    assert "recommended: det=int8,est=fp32\n" in capsys.readouterr().out
    args.ep = "webgpu"
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "execution provider webgpu" in out
    assert "recommended: det=int8,est=int8,ep=webgpu" in out


def test_report_has_a_provider_section(results):
    from hemoedge.report.html import render

    _, md = render(with_webgpu(results))
    sec = md.split("## Execution providers (web)", 1)[1]
    assert "| det=int8,est=int8,ep=webgpu | 2 | bench | yes |" in sec
    assert f"{FAST_MS:.1f} ms" in sec
    _, md = render(make_results())  # nothing measured off WASM: no such section
    assert "Execution providers (web)" not in md
