"""The command behind a result is recorded one way: `results.command_line` of an argv — the
one `hemoedge.cli.main` / `call` parsed (kept on the parsed arguments as `invocation`), or,
for a stage `run` / `sweep` call as a library, the argv `cli.argv_for` builds from its config
(tests/test_stages.py)."""

from onnx_tiny import tiny_estimator

from hemoedge.cli import call
from hemoedge.report.results import Results, command_line, invocation


def test_command_line_quotes():
    assert command_line(["parity", "a b", "--images", 1]) == "hemoedge parity 'a b' --images 1"


def test_invocation_falls_back_without_the_cli():
    class A:
        pass

    a = A()
    assert invocation(a, "fallback") == "fallback"
    a.invocation = "hemoedge x"
    assert invocation(a, "fallback") == "hemoedge x"


def test_add_command_records_once():
    r = Results()
    r.add_command("hemoedge a")
    r.add_command("hemoedge a")
    r.add_command("")
    assert r.commands == ["hemoedge a"]


def test_bench_cpu_records_the_argv_it_was_called_with(tmp_path):
    model, out = tiny_estimator(tmp_path / "m.onnx"), tmp_path / "r.json"
    argv = ["bench", "cpu", "--model", str(model), "--threads", "1", "--runs", "3",
            "--warmup", "0", "--results", str(out)]
    assert call(argv) == 0
    assert Results.load(out).commands == [command_line(argv)]
