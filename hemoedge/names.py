"""The suite's vocabulary, defined once: model roles, precisions, the variant string, the
metric names more than one module builds, and the anaemia threshold.

A variant names what a figure was measured on: `det=P` or `est=P` for one model,
`det=P,est=Q` for a pairing, `""` for run-wide figures; a sweep adds `backbone=NAME`, a peer
quantiser `engine=NAME`, a browser execution provider other than WASM `ep=NAME`. Read it as
opaque `key=value` pairs (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- roles and precisions -----------------------------------------------------------------
DETECTOR, ESTIMATOR = "detector", "estimator"
ROLES = (DETECTOR, ESTIMATOR)
ROLE_KEY = {DETECTOR: "det", ESTIMATOR: "est"}  # role -> its key in a variant string
KEY_ROLE = {v: k for k, v in ROLE_KEY.items()}
PRECISIONS = ("fp32", "fp16", "int8")

# --- device classes -----------------------------------------------------------------------
DESKTOP = "desktop"  # the device class of a figure without params.device_class (no emulation)


def figure_device_class(params: dict) -> str:
    """The device class a figure was measured for: bench web's emulated figures carry
    params.device_class, every other figure is DESKTOP."""
    return str(params.get("device_class") or DESKTOP)
REFERENCE_PRECISION = "fp32"  # what every other precision is compared against
# the pairing the app ships (`webapp build`'s default) and bench web times against the seed:
# the int8 detector (1.6x faster than fp32 in WASM, `hemoedge bench web`) and the fp16
# estimator (the fp32 answer within 0.011 g/dL, the same in-frame WASM speed, half the
# download); docs/webapp.md
SHIPPED = ("int8", "fp16")  # (detector, estimator) precisions

# --- thresholds ---------------------------------------------------------------------------
ANAEMIA_THRESHOLD_GDL = 12.0  # g/dL; anaemic = Hb below it (WHO, non-pregnant women)


# --- variants -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """An ordered set of `key=value` pairs; `str(v)` is its variant string."""

    pairs: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def parse(text: str) -> Variant:
        """'det=int8,est=fp32' -> Variant; blanks are skipped, a bare token maps to ''."""
        out: dict[str, str] = {}
        for part in (text or "").split(","):
            part = part.strip()
            if part:
                key, _, value = part.partition("=")
                out[key.strip()] = value.strip()
        return Variant(tuple(out.items()))

    @staticmethod
    def of(det: str | None = None, est: str | None = None, **extra: str) -> Variant:
        """Variant.of('int8', 'fp32') is det=int8,est=fp32; None leaves a key out."""
        pairs = [(k, v) for k, v in (("det", det), ("est", est)) if v]
        return Variant(tuple(pairs + [(k, v) for k, v in extra.items() if v is not None]))

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.pairs)

    def as_dict(self) -> dict[str, str]:
        return dict(self.pairs)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.as_dict().get(key, default)

    @property
    def det(self) -> str | None:
        return self.get("det")

    @property
    def est(self) -> str | None:
        return self.get("est")

    def covers(self, other: Variant) -> bool:
        """True when every pair of self is in other: det=int8 covers det=int8,est=fp32."""
        return set(self.pairs) <= set(other.pairs)


def variant_name(det: str | None = None, est: str | None = None, ep: str | None = None) -> str:
    """'det=int8,est=fp32' for a pairing, 'det=int8' or 'est=fp16' for one model; with a
    browser execution provider other than WASM, 'det=int8,est=fp32,ep=webgpu' (with_ep)."""
    return with_ep(str(Variant.of(det, est)), ep)


# --- browser execution providers (onnxruntime-web) ----------------------------------------
WASM = "wasm"  # the app's runtime; its figures carry no ep= key (their names never changed)
EPS = (WASM, "webgpu", "webnn")
EP_KEY = "ep"  # the variant key of a figure measured with another execution provider


def with_ep(variant: str, ep: str | None) -> str:
    """The variant of a figure measured with execution provider `ep`: unchanged for WASM (or
    None), else with ep=NAME appended ('det=int8' -> 'det=int8,ep=webgpu')."""
    if not ep or ep == WASM:
        return variant
    return f"{variant},{EP_KEY}={ep}" if variant else f"{EP_KEY}={ep}"


def ep_of(variant: str) -> str:
    """The execution provider a variant names: its ep= value, else 'wasm'."""
    return Variant.parse(variant).get(EP_KEY) or WASM


SHIPPED_VARIANT = variant_name(*SHIPPED)  # "det=int8,est=fp16"


def role_variant(role: str, precision: str) -> str:
    """The variant string of one model: ('detector', 'int8') -> 'det=int8'."""
    return f"{ROLE_KEY[role]}={precision}"


def parse_variant(text: str) -> dict[str, str]:
    """'det=int8,est=fp32' -> {'det': 'int8', 'est': 'fp32'}; a bare token maps to ''."""
    return Variant.parse(text).as_dict()


# --- metric names built in more than one module ------------------------------------------
def cpu_latency(role: str, stat: str = "p50") -> str:
    """cpu.<role>.latency_ms.<stat> (bench cpu; the gate proof reads it)."""
    return f"cpu.{role}.latency_ms.{stat}"


def parity_metric(role: str, precision: str, figure: str) -> str:
    """parity.<role>.<P>.<figure> (parity writes it; the report reads it)."""
    return f"parity.{role}.{precision}.{figure}"
