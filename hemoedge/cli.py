"""Command line: argparse only. Each sub-command parses its arguments and hands them to the
stage's `cli(args) -> int` (imported lazily, so `hemoedge --help` stays fast).

Exit codes: 0 ok; 1 a verdict (gate/parity/accuracy failure); 2 bad input or usage, always
one line naming the file or the argument. Numeric options are range-checked by the parsers
(hemoedge/cli_parsers.py: one function per command group, and the argument types), and every
output path a command will write is checked (`outputs`, below) before the command starts.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hemoedge import __version__
from hemoedge.cli_parsers import GROUPS, _pairings, _Parser, _shard
from hemoedge.errors import (
    HemoedgeError,
    check_output_dir,
    check_output_file,
    one_line,
    os_error_message,
)
from hemoedge.report.results import command_line


def _handler(module: str, func: str = "cli"):
    def call(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), func)(args)
    return call


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hemoedge", description=(
        "Edge-optimisation and benchmarking suite for an on-device fingernail Hb pipeline. "
        "Not a medical device."))
    p.add_argument("--version", action="version", version=f"hemoedge {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in GROUPS:  # the command groups, in --help order (hemoedge/cli_parsers.py)
        add(sub, _handler)
    return p


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    return build_parser()


# Output paths each command writes: (argument, "file" | "dir"). They are checked before the
# command starts, so a folder where a file belongs, a file where a folder belongs or a
# read-only location fails at once with one line, never after the work (and leaves nothing).
OUTPUTS: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {
    ("data", "synth"): (("out", "dir"),),
    ("data", "video"): (("out", "file"),),
    ("train",): (("out", "dir"),),
    ("export",): (("out", "dir"),),
    ("parity",): (("results", "file"),),
    ("eval",): (("results", "file"),),
    ("bench", "cpu"): (("results", "file"),),
    ("bench", "web"): (("results", "file"),),
    ("report",): (("html", "file"), ("md", "file")),
    ("gate",): (("junit", "file"), ("md", "file"), ("benchmark_json", "file")),
    ("webapp", "build"): (("out", "dir"),),
    ("sweep",): (("out", "dir"),),
    ("run",): (("out", "dir"),),
}
# commands whose results.json defaults to ART/results.json
RESULTS_IN_ART = {("parity",), ("eval",), ("bench", "cpu")}


def _command_path(args: argparse.Namespace) -> tuple[str, ...]:
    path = (args.command,)
    for attr in ("data_command", "bench_command", "webapp_command"):
        if getattr(args, attr, None):
            path += (getattr(args, attr),)
    return path


def check_outputs(args: argparse.Namespace) -> None:
    """OutputError (exit 2) if a path this command will write cannot be written."""
    check_stage_outputs(_command_path(args), vars(args))


def check_stage_outputs(cmd: tuple[str, ...], values: Mapping[str, Any]) -> None:
    """`check_outputs` for `hemoedge CMD` with these parsed-argument values (dest -> value):
    what `run` and `sweep` check before they call a stage as a library."""
    for attr, kind in OUTPUTS.get(cmd, ()):
        value = values.get(attr)
        if value:
            what = f"--{attr.replace('_', '-')} {kind}"
            (check_output_dir if kind == "dir" else check_output_file)(value, what)
    if cmd == ("gate",) and values.get("update_baseline"):
        from hemoedge.gate.baseline import DEFAULT_BASELINE

        check_output_file(values.get("baseline") or DEFAULT_BASELINE, "--baseline file")
    art = values.get("art")
    if cmd in RESULTS_IN_ART and not values.get("results") and art and Path(art).is_dir():
        check_output_file(Path(art) / "results.json", "results file")


def subparser(cmd: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of `hemoedge CMD` (e.g. ("bench", "cpu"))."""
    p = _parser()
    for name in cmd:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


def _arg_text(action: argparse.Action, v: Any) -> str:
    if action.type is _pairings:
        return ",".join(f"{d}:{e}" for d, e in v)
    if action.type is _shard:
        return f"{v[0]}/{v[1]}"
    if isinstance(v, (list, tuple)):
        return ",".join(_arg_text(action, x) for x in v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def argv_for(cmd: Sequence[str], options: Mapping[str, Any]) -> list[str]:
    """The argv of `hemoedge CMD ...` that the parser reads back as `options` (parsed-argument
    name -> value, e.g. {"art": ..., "images": 6, "results": ...}): CMD, the positionals in the
    parser's order, then the options in the order given; an option that is None or false is
    left out. The one way `run` and `sweep` turn the config of a
    stage they call as a library into the `hemoedge ...` command they record."""
    p = subparser(cmd)
    by_dest = {a.dest: a for a in p._actions if a.dest not in ("help", "func")}
    unknown = set(options) - set(by_dest)
    if unknown:
        raise ValueError(f"hemoedge {' '.join(cmd)} has no option(s) {sorted(unknown)}")
    argv = list(cmd)
    for a in p._actions:  # positionals, in order
        if not a.option_strings and a.dest in options:
            v = options[a.dest]
            argv += [str(x) for x in v] if a.nargs in ("+", "*") else [str(v)]
    for dest, v in options.items():
        a = by_dest[dest]
        if not a.option_strings or v is None or v is False:
            continue
        flag = a.option_strings[-1] if a.option_strings[-1].startswith("--") \
            else a.option_strings[0]
        if isinstance(a, argparse._StoreTrueAction):
            argv.append(flag)
        elif isinstance(a, argparse._AppendAction):
            for x in v:
                argv += [flag, _arg_text(a, x)]
        elif a.nargs in ("+", "*"):
            argv += [flag, *(_arg_text(a, x) for x in v)]
        else:
            argv += [flag, _arg_text(a, v)]
    return argv


def error_message(e: BaseException) -> str | None:
    """The one-line message of an input or environment failure (exit 2), or None for anything
    else (a bug: left to propagate with its traceback)."""
    if isinstance(e, HemoedgeError):
        return one_line(str(e))
    if isinstance(e, OSError):  # missing file, permissions, full disk, ...
        return os_error_message(e)
    if type(e).__name__ == "DecompressionBombError":  # PIL: an image header claims too much
        return one_line(f"an image is too large to decode safely ({e})")
    return None


def call(argv: list[str], **overrides) -> int:
    """Run `hemoedge ARGV` in this process, exactly as the command line parses it (errors
    propagate; `main` turns them into exit codes). `overrides` set parsed arguments the command
    line does not offer. (`run`, `sweep` and ci/prove_gate.py call the stages as a library
    instead: hemoedge.stages.)"""
    args = _parser().parse_args(argv)
    args.invocation = command_line(argv)  # what the stage records in results.json
    for k, v in overrides.items():
        setattr(args, k, v)
    check_outputs(args)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.invocation = command_line(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from hemoedge import offline

    offline.configure()
    try:
        check_outputs(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("hemoedge: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        msg = error_message(e)
        if msg is None:
            raise
        print(f"hemoedge: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
