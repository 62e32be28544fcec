"""The packaged budgets (hemoedge/gate/budgets.toml, what `hemoedge gate` reads by default)
against a fabricated run shaped like measured figures, and `hemoedge gate` run from a folder
that is no checkout (no ci/ there), as an installed package's user runs it."""

from __future__ import annotations

from report_fixtures import make_results

from hemoedge.cli import main
from hemoedge.gate import PACKAGED_BUDGETS, evaluate, load_budgets, make_baseline

BUDGETS = PACKAGED_BUDGETS


def test_committed_budgets_pass_on_facts_like_run():
    budgets = load_budgets(BUDGETS)
    kinds = {b.kind for b in budgets}
    assert kinds == {"absolute", "baseline", "ratio"}
    r = make_results()
    res = evaluate(r, budgets, make_baseline(r))
    assert res.exit_code == 0, [c.describe() for c in res.failures + res.missing]
    # a desktop run has no emulated phone pass: only the phone-class budgets are skipped
    phone = {b.name for b in budgets if b.ref.device_class != "desktop"}
    assert phone and {c.budget.name for c in res.checks if c.verdict == "skipped"} == phone
    # band agreement 0.9865 meets the CI budget (0.95) but not the 0.99 target (warn only)
    assert [c.budget.name for c in res.warnings] == [
        "int8 pipeline severity band agreement >= 0.99 (target)"]


def test_cpu_only_run_skips_web_budgets():
    budgets = load_budgets(BUDGETS)
    r = make_results(web=False)
    res = evaluate(r, budgets, make_baseline(r))
    skipped = {c.budget.name for c in res.checks if c.verdict == "skipped"}
    web_budgets = {b.name for b in budgets if b.ref.metric.startswith("web.")}
    assert skipped == web_budgets
    assert {"zero dropped capture frames",
            "web frame time / seed configuration >= 2.5x faster (target)"} <= skipped
    assert res.exit_code == 0


def _junit_skipped(path) -> set[str]:
    from junitparser import JUnitXml

    return {c.name for s in JUnitXml.fromfile(str(path)) for c in s
            if any(type(x).__name__ == "Skipped" for x in c.result)}


def test_gate_outside_a_checkout_judges_with_the_packaged_budgets(tmp_path, monkeypatch, capsys):
    """No --budgets, no --baseline, no ci/ in the working directory: the packaged budgets give
    the verdict; the baseline budgets are reported not judged, every other budget is judged."""
    monkeypatch.chdir(tmp_path)
    make_results().save(tmp_path / "r.json")
    budgets = load_budgets(BUDGETS)
    by_base = {b.name for b in budgets if b.kind == "baseline"}
    phone = {b.name for b in budgets if b.ref.device_class != "desktop"}
    assert main(["gate", "r.json", "--junit", "g.xml"]) == 0
    out = capsys.readouterr().out
    assert (f"{len(by_base)} baseline budget(s) not judged: ci/baseline.json is not in "
            f"{tmp_path}; no baseline: pass --baseline FILE, or --update-baseline to make one"
            in " ".join(out.split()))
    assert _junit_skipped(tmp_path / "g.xml") == by_base | phone
    # the verdict is real: a regression an absolute budget catches fails without a baseline
    bad = make_results()
    bad.get("acc.ref.e2e.hb_mae_delta", "det=int8,est=fp16").value = 0.2
    bad.save(tmp_path / "bad.json")
    assert main(["gate", "bad.json"]) == 1
    assert not (tmp_path / "ci").exists()  # gating wrote no baseline


def test_gate_baseline_named_missing_or_corrupt_and_made_on_purpose(tmp_path, monkeypatch,
                                                                     capsys):
    """A --baseline FILE that is absent (while budgets compare against it) or unreadable is a
    one-line error, exit 2, nothing written; --update-baseline makes ci/baseline.json here,
    which the gate then reads by default and judges every baseline budget against."""
    monkeypatch.chdir(tmp_path)
    make_results().save(tmp_path / "r.json")
    (tmp_path / "bad.json").write_text("{")
    for base, says in (("nope.json", "nope.json not found but budget(s) "),
                       ("nope.json", "`hemoedge gate RESULTS.json --update-baseline --baseline "
                                     "nope.json`"),
                       ("bad.json", "bad.json")):
        capsys.readouterr()
        assert main(["gate", "r.json", "--baseline", base, "--md", "g.md"]) == 2
        out, err = capsys.readouterr()
        assert err.startswith("hemoedge: error: ") and err.count("\n") == 1 and says in err
        assert out == "" and not (tmp_path / "g.md").exists()

    assert main(["gate", "r.json", "--update-baseline"]) == 0
    assert (tmp_path / "ci" / "baseline.json").is_file()
    capsys.readouterr()
    assert main(["gate", "r.json", "--junit", "g.xml"]) == 0
    assert "not judged" not in capsys.readouterr().out
    phone = {b.name for b in load_budgets(BUDGETS) if b.ref.device_class != "desktop"}
    assert _junit_skipped(tmp_path / "g.xml") == phone
