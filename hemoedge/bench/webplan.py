"""What `hemoedge bench web` measures: its units (a pairing, the models of a precision, the
seed reference; each once per execution provider asked for) and the plan of a run or shard."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from typing import TYPE_CHECKING

from hemoedge.errors import BenchError
from hemoedge.names import ROLE_KEY, ROLES, SHIPPED, WASM, variant_name

if TYPE_CHECKING:
    from hemoedge.bench.web import WebBenchConfig

log = logging.getLogger("hemoedge.bench.web")

# Default pairings: det x est over fp32/int8, plus the shipped pairing (its estimator is fp16:
# onnxruntime-web runs fp16 weights at fp32 speed, measured, for half the download); every
# precision's model-level latency is still measured every run, so that claim is re-checked.
DEFAULT_DET, DEFAULT_EST = ("fp32", "int8"), ("fp32", "int8")
# the shipped pairing (hemoedge.names.SHIPPED): --quick measures it alone, the full sweep adds
# it to det x est, the seed is compared with it and the gate's seed-ratio budget reads it
TUNED = SHIPPED
SEED = ("fp32", "fp32")


@dataclass(frozen=True)
class Unit:
    kind: str  # "pairing" (frames, captures, start figures) | "models" (latency only) | "seed"
    det: str
    est: str
    roles: tuple[str, ...] = ROLES  # roles whose bare latency this unit may measure
    ep: str = WASM  # onnxruntime-web execution provider; other than wasm: variants get ep=NAME

    @property
    def variant(self) -> str:
        return "" if self.kind == "seed" else variant_name(self.det, self.est, self.ep)

    def model_variant(self, role: str) -> str:
        """The variant of one of this unit's models: 'det=int8' (or 'det=int8,ep=webgpu')."""
        return variant_name(**{ROLE_KEY[role]: self.det if role == ROLES[0] else self.est},
                            ep=self.ep)

    @property
    def label(self) -> str:
        return "seed (det=fp32,est=fp32, 1 thread, sequential)" if self.kind == "seed" else (
            f"{self.variant}" + (" (models)" if self.kind == "models" else ""))


def default_pairings(have: dict[str, list[str]], quick: bool) -> list[tuple[str, str]]:
    """quick: the tuned pairing (or the nearest available); else det x est over fp32/int8,
    and the tuned pairing when that grid does not hold it."""
    if not have["detector"] or not have["estimator"]:
        raise BenchError(f"the artifact needs a detector and an estimator; has {have}")
    if quick:
        det = TUNED[0] if TUNED[0] in have["detector"] else have["detector"][-1]
        est = TUNED[1] if TUNED[1] in have["estimator"] else have["estimator"][0]
        return [(det, est)]
    dets = [p for p in DEFAULT_DET if p in have["detector"]] or have["detector"][:1]
    ests = [p for p in DEFAULT_EST if p in have["estimator"]] or have["estimator"][:1]
    pairs = [(d, e) for d in dets for e in ests]
    if TUNED not in pairs and TUNED[0] in have["detector"] and TUNED[1] in have["estimator"]:
        pairs.append(TUNED)
    return pairs


def plan(cfg: WebBenchConfig, have: dict[str, list[str]]) -> tuple[list[Unit], tuple[str, str]]:
    """The units of this shard, and the tuned pairing (the one the seed is compared with)."""
    pairs = list(cfg.pairings) if cfg.pairings else default_pairings(have, cfg.quick)
    for d, e in pairs:
        if d not in have["detector"] or e not in have["estimator"]:
            raise BenchError(f"pairing {variant_name(d, e)} is not in {cfg.art} "
                             f"(detector: {have['detector']}, estimator: {have['estimator']})")
    units = [Unit("pairing", d, e) for d, e in pairs]
    if not cfg.quick and not cfg.pairings:  # model-level latency for precisions not paired
        covered = {("detector", d) for d, _ in pairs} | {("estimator", e) for _, e in pairs}
        for p in ("fp16", "fp32", "int8"):
            roles = tuple(r for r in ROLES if p in have[r] and (r, p) not in covered)
            if roles:
                units.append(Unit("models", p if p in have["detector"] else pairs[0][0],
                                  p if p in have["estimator"] else pairs[0][1], roles))
    tuned = TUNED if TUNED in pairs else pairs[0]
    # every execution provider asked for is a unit of its own (the seed stays a WASM reference)
    units = [dc_replace(u, ep=ep) for ep in cfg.eps for u in units]
    if cfg.shard is not None:
        i, n = cfg.shard
        units = units[i - 1::n]
    if cfg.seed and all(p in have[r] for r, p in zip(ROLES, SEED, strict=True)):
        # the seed goes with the tuned pairing, so the speedup is measured within one job
        if any(u.kind == "pairing" and (u.det, u.est) == tuned and u.ep == WASM for u in units):
            units.append(Unit("seed", *SEED))
    elif cfg.seed and WASM in cfg.eps:
        log.warning("no fp32 detector + estimator in %s: the seed reference is skipped", cfg.art)
    return units, tuned
