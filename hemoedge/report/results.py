"""results.json: one flat list of measurements (schema hemoedge.results/1, see docs/results.md).

Every stage appends metrics; report, choose and gate read only this file. Several files
(shards of one run) merge by concatenating their metric lists.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemoedge.errors import ResultsError
from hemoedge.names import variant_name as variant_name  # re-exported: stages import it here

SCHEMA = "hemoedge.results/1"
BETTER = ("lower", "higher", "none")




@dataclass
class Metric:
    name: str  # dotted and stable, e.g. "cpu.detector.latency_ms.p50"
    variant: str  # e.g. "det=int8,est=int8", "det=int8", or "" for run-wide figures
    value: float
    unit: str = ""
    better: str = "none"  # "lower", "higher" or "none"
    n: int | None = None  # samples behind the value
    ci95: list[float] | None = None  # bootstrap 95 % interval, same unit as value
    params: dict[str, Any] = field(default_factory=dict)  # e.g. {"threads": 2}

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ResultsError(f"metric {self.name}: better must be one of {BETTER}, got {self.better!r}")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool):
            raise ResultsError(f"metric {self.name}: value must be a number, got {self.value!r}")
        self.value = float(self.value)

    def key(self) -> tuple:
        return (self.name, self.variant, json.dumps(self.params, sort_keys=True))

    def to_dict(self) -> dict:
        d = {"name": self.name, "variant": self.variant, "value": _finite(self.value),
             "unit": self.unit, "better": self.better}
        if self.n is not None:
            d["n"] = int(self.n)
        if self.ci95 is not None:
            d["ci95"] = [_finite(v) for v in self.ci95]
        if self.params:
            d["params"] = self.params
        return d


def command_line(argv: list[str]) -> str:
    """The one way a command is recorded in results.json: `hemoedge ARGV`, shell-quoted
    (shlex.join), so it can be pasted back."""
    return shlex.join(["hemoedge", *map(str, argv)])


def invocation(args: Any, fallback: str = "") -> str:
    """The command that invoked a stage: what `hemoedge.cli.main` / `call` parsed (recorded on
    the parsed arguments as `invocation`); `fallback` when a stage is called without the CLI."""
    return getattr(args, "invocation", None) or fallback


def _finite(v: float) -> float | None:
    return None if (v is None or not math.isfinite(v)) else float(v)


@dataclass
class Results:
    env: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # the commands that produced the figures

    def add(self, name: str, variant: str, value: float, unit: str = "", better: str = "none",
            n: int | None = None, ci95: list[float] | None = None, **params: Any) -> Metric:
        m = Metric(name, variant, value, unit, better, n, ci95, dict(params))
        self.metrics.append(m)
        return m

    def get(self, name: str, variant: str = "", **params: Any) -> Metric | None:
        """The last metric with this name and variant whose params include `params`."""
        for m in reversed(self.metrics):
            if m.name == name and m.variant == variant and all(
                    m.params.get(k) == v for k, v in params.items()):
                return m
        return None

    def add_command(self, cmd: str) -> None:
        """Record a command once (a re-run of the same command is not listed twice)."""
        if cmd and cmd not in self.commands:
            self.commands.append(cmd)

    def find(self, prefix: str = "", variant: str | None = None) -> list[Metric]:
        return [m for m in self.metrics if m.name.startswith(prefix)
                and (variant is None or m.variant == variant)]

    def extend(self, other: Results) -> None:
        if "sweep" in self.env and "sweep" in other.env:  # shards of one backbone sweep
            self.env["sweep"] = _merge_sweep_env(self.env["sweep"], other.env["sweep"])
        self.env.update({k: v for k, v in other.env.items() if k not in self.env})
        for k, v in other.variants.items():
            self.variants.setdefault(k, {}).update(v)
        self.metrics.extend(other.metrics)
        self.commands.extend(c for c in other.commands if c not in self.commands)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "env": self.env, "variants": self.variants,
                "commands": self.commands, "metrics": [m.to_dict() for m in self.metrics]}

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename) so a crash never leaves half a file; the
        file gets the usual mode (0666 less the umask), like any file the user creates."""
        from hemoedge.artifact import write_atomic

        path = Path(path)
        if path.is_dir():
            raise ResultsError(f"{path}: is a folder; expected a results.json file path")
        return write_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @staticmethod
    def from_dict(d: dict, source: str = "results") -> Results:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ResultsError(f"{source}: expected schema {SCHEMA!r}, found {found!r}")
        out = Results(env=dict(d.get("env", {})), variants=dict(d.get("variants", {})),
                      commands=list(d.get("commands", [])))
        metrics = d.get("metrics", [])
        if not isinstance(metrics, list):
            raise ResultsError(f"{source}: 'metrics' must be a list, found {type(metrics).__name__}")
        for i, m in enumerate(metrics):
            try:
                value = m["value"]
                if isinstance(value, float) and not math.isfinite(value):
                    raise ResultsError(
                        f"{source}: metric #{i} {m.get('name')!r} has value {value}; a "
                        "non-finite figure is written as null (never a pass), NaN/Infinity "
                        "literals are not accepted")
                out.metrics.append(Metric(m["name"], m.get("variant", ""),
                                          float("nan") if value is None else value,
                                          m.get("unit", ""), m.get("better", "none"), m.get("n"),
                                          m.get("ci95"), dict(m.get("params", {}))))
            except (KeyError, TypeError, AttributeError) as e:
                raise ResultsError(f"{source}: metric #{i} is malformed "
                                   f"({e.__class__.__name__} {e}): {str(m)[:200]}") from e
        return out

    @staticmethod
    def load(path: str | Path) -> Results:
        path = Path(path)
        if not path.is_file():
            raise ResultsError(f"{path}: no such results file (expected a results.json)")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultsError(f"{path}: not valid JSON ({e}); expected a hemoedge results.json") from e
        except OSError as e:
            raise ResultsError(f"{path}: cannot be read ({e.strerror or e.__class__.__name__})") from e
        return Results.from_dict(d, source=str(path))

    @staticmethod
    def load_or_new(path: str | Path) -> Results:
        return Results.load(path) if Path(path).is_file() else Results()


# Not part of what a figure *is*: the raw samples, and what bench web records next to a figure
# as its outcome (per-repeat medians and their spread, the per-run values, the first visit's
# request count, URLs fetched twice, encodings seen; an execution provider's availability:
# why not, the adapter, the pages and sessions seen; how the frames reached the app, which a
# figure's device already decides). They can change on every re-run of the same measurement, so
# a re-run must replace the figure, not add a second one.
VOLATILE_PARAMS = ("samples", "repeats", "spread_pct", "values", "requests", "unique_bytes",
                   "fetched_twice", "duplicate_urls", "encodings", "reason", "adapter", "pages",
                   "ep_sessions", "camera")


def identity(m: Metric) -> tuple:
    """What a figure is: name, variant and params other than VOLATILE_PARAMS. Two runs of the
    same stage with the same options measure figures of the same identity."""
    params = {k: v for k, v in m.params.items() if k not in VOLATILE_PARAMS}
    return m.name, m.variant, json.dumps(params, sort_keys=True, default=str)


def merge_stage(path: str | Path, new: Results, replaces: str | None = None,
                where: Callable[[Metric], bool] | None = None) -> Results:
    """The one way a stage writes its results into a results file (created if missing).

    - A re-run replaces: every metric in the file with the identity (name, variant, params
      without VOLATILE_PARAMS) of a new metric is dropped, so re-running a stage never duplicates
      its figures. With `replaces` (a metric-name prefix, e.g. "acc."), every metric with that
      prefix is dropped first, so figures a re-run no longer produces go too; `where` limits
      that to the metrics it accepts (e.g. one execution provider's variants).
    - Other figures stay: stages and shards with disjoint metrics merge.
    - The environment of the new run wins key by key (the machine that measured last);
      variants are merged; commands are listed once each.
    Merging several *files* of one run (shards) is `merge`, which refuses conflicting
    duplicates instead."""
    res = Results.load_or_new(path)
    if replaces is not None:  # "" with `where`: every metric `where` accepts
        res.metrics = [m for m in res.metrics if not m.name.startswith(replaces) or
                       (where is not None and not where(m))]
    fresh = {identity(m) for m in new.metrics}
    res.metrics = [m for m in res.metrics if identity(m) not in fresh]
    res.env.update(new.env)
    for k, v in new.variants.items():
        res.variants.setdefault(k, {}).update(v)
    res.metrics.extend(new.metrics)
    for c in new.commands:
        res.add_command(c)
    res.save(path)
    return res


append_stage = merge_stage  # the name bench web calls


_STATUS_RANK = {"done": 3, "failed": 2, "skipped": 1, "pending": 0}


def _merge_sweep_env(a: dict, b: dict) -> dict:
    """The union of two shards' sweep entries; for a label in both, the shard that got
    furthest with it (done > failed > skipped > pending) wins. Order: a's, then b's new ones."""
    entries = {e["label"]: e for e in a.get("entries", [])}
    for e in b.get("entries", []):
        old = entries.get(e["label"])
        if old is None or (_STATUS_RANK.get(e.get("status"), 0)
                           > _STATUS_RANK.get(old.get("status"), 0)):
            entries[e["label"]] = e
    return {**a, "entries": list(entries.values())}


def _key(m: Metric) -> tuple:
    return m.name, m.variant, json.dumps(m.params, sort_keys=True, default=str)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def merge(paths: list[str | Path]) -> Results:
    """Merge shards of one run by concatenation. A metric (name, variant, params) that two
    files both hold must have the same value in both (then it is kept once): shards complete
    each other, they never silently override each other — a second file repeating a failing
    metric with a better value is an error, not a pass."""
    out = Results()
    seen: dict[tuple, tuple[float, str]] = {}
    for p in paths:
        r = Results.load(p)
        fresh = []
        for m in r.metrics:
            k = _key(m)
            if k in seen and seen[k][1] != str(p):
                if not _same(seen[k][0], m.value):
                    raise ResultsError(
                        f"{p}: {m.name} [{m.variant}] = {m.value:g} conflicts with "
                        f"{seen[k][0]:g} in {seen[k][1]}; shards must not measure the same "
                        "metric twice (merge files of one run only)")
                continue  # the same figure in both files: keep it once
            seen.setdefault(k, (m.value, str(p)))
            fresh.append(m)
        r.metrics = fresh
        out.extend(r)
    return out
