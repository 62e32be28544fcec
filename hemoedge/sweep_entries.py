"""The backbone sweep's entries and settings: `Entry` (a backbone, an input size, a task), the
default and quick entry lists, `SweepConfig`, the feasibility check run before an entry trains
(weights, projected fine-tuning time), and `EntryDir`, an entry's folder of plans, results and
finished-stage markers. The sweep itself: hemoedge/sweep.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from hemoedge.errors import HemoedgeError
from hemoedge.names import ANAEMIA_THRESHOLD_GDL
from hemoedge.profile import Profile, profile

WHO_THRESHOLD = ANAEMIA_THRESHOLD_GDL


@dataclass(frozen=True)
class Entry:
    backbone: str  # timm model name
    size: int = 224  # estimator input side, px
    task: str = "regression"  # "regression" (Hb, Ridge) | "classification" (anaemic, logistic)
    origin: str = ""  # where the seed work used it

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification"):
            raise HemoedgeError(f"sweep entry {self.backbone}: task must be regression or "
                                f"classification, got {self.task!r}")
        if self.size % 32 or not 64 <= self.size <= 512:
            raise HemoedgeError(f"sweep entry {self.backbone}: input size must be a multiple of "
                                f"32 in 64..512, got {self.size}")

    @property
    def label(self) -> str:
        """'efficientnet_b0', 'mobilenetv3_small_100@192', 'resnet18:cls'."""
        return (self.backbone + (f"@{self.size}" if self.size != 224 else "")
                + (":cls" if self.task == "classification" else ""))

    @staticmethod
    def parse(text: str) -> Entry:
        """'NAME[@SIZE][:cls|:reg]' -> Entry."""
        name, task = text.strip(), "regression"
        if ":" in name:
            name, _, t = name.partition(":")
            task = {"cls": "classification", "reg": "regression"}.get(t, t)
        size = 224
        if "@" in name:
            name, _, s = name.partition("@")
            try:
                size = int(s)
            except ValueError as e:
                raise HemoedgeError(f"--backbones: bad input size in {text!r} "
                                    "(expected NAME[@SIZE][:cls])") from e
        if not name:
            raise HemoedgeError(f"--backbones: empty backbone name in {text!r}")
        return Entry(name, size, task)


# The seed work's backbones. Order: cheap first, regression before classification so
# a classification entry on an already trained backbone reuses its features.
DEFAULT_ENTRIES = (
    Entry("mobilenetv4_conv_small", origin="the shipped default: nail Hb regression"),
    Entry("mobilenetv3_small_100", origin="seed: nail Hb regression"),
    Entry("mobilenetv3_small_100", 192, origin="seed: Hb regression from lip photos at 192"),
    Entry("tf_efficientnetv2_b0", origin="seed: nail Hb regression (EfficientNetV2-B0)"),
    Entry("efficientnet_b0", origin="seed: nail Hb regression"),
    Entry("mobilenetv4_conv_small", task="classification",
          origin="the default backbone with the anaemia head"),
    Entry("mobilenetv1_100", task="classification", origin="seed: lip anaemia (MobileNet)"),
    Entry("resnet18", task="classification", origin="seed: conjunctiva anaemic/healthy"),
    Entry("resnet50", task="classification", origin="seed: lip anaemia"),
    Entry("legacy_xception", task="classification", origin="seed: lip anaemia (Xception)"),
    Entry("vgg16", task="classification", origin="seed: lip anaemia"),
)
# lcnet_050 as the classifier was tried and dropped: after the quick form's two optimiser steps
# its pooled features collapse (std ~3e-8), the standardised logistic head gets weights ~1e5
# and fp16 cannot hold its logits (README, "Which backbone is worth shipping?").
QUICK_ENTRIES = (Entry("lcnet_050", origin="small, for CI"),
                 Entry("mobilenetv3_small_050", task="classification", origin="small, for CI"))

STAGES = ("train", "export", "detector", "quantize", "parity", "eval", "bench cpu", "bench web")


@dataclass(frozen=True)
class SweepConfig:
    out: Path
    entries: tuple[Entry, ...] = DEFAULT_ENTRIES
    data: Path | None = None  # Yakimov-layout folder; None: synthesise one into <out>/data
    quick: bool = False  # CI form: tiny training, few samples and runs
    shard: tuple[int, int] | None = None
    epochs: int | None = None  # backbone fine-tuning epochs (None: 5, quick 1)
    anaemia_threshold: float = WHO_THRESHOLD
    max_train_min: float = 15.0  # skip entries whose projected training exceeds this
    max_model_mb: float = 100.0  # skip entries whose fp32 weights exceed this
    threads: int = 2  # CPU and WASM threads of the benchmarks
    det_precision: str = "int8"  # detector variant of the web pairings
    detector_art: Path | None = None  # an artifact with the detector variants (None: make one)
    web: bool = True  # bench web (needs Chromium and the webapp's npm install)
    bench: bool = True  # False: stop after eval (a later run on one machine adds the benchmarks)
    seed: int = 0
    command: str = ""  # the sweep's own command line, recorded in env["sweep"]

    def __post_init__(self) -> None:
        labels = [e.label for e in self.entries]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise HemoedgeError(f"--backbones lists {dup} twice")
        if not self.entries:
            raise HemoedgeError("--backbones: no entries")
        if self.max_train_min <= 0 or self.max_model_mb <= 0:
            raise HemoedgeError("--max-train-min and --max-model-mb must be positive")

    @property
    def fine_tune_epochs(self) -> int:
        return self.epochs if self.epochs is not None else self.profile.epochs

    @property
    def stages(self) -> list[str]:
        return [s for s in STAGES if (self.web or s != "bench web")
                and (self.bench or not s.startswith("bench"))]

    @property
    def profile(self) -> Profile:
        return profile(self.quick)

    @property
    def patients(self) -> int:
        return self.profile.sweep_patients

    def mine(self) -> list[Entry]:
        """This shard's entries."""
        if self.shard is None:
            return list(self.entries)
        i, n = self.shard
        return list(self.entries[i - 1::n])


# ------------------------------------------------------------------------------ feasibility

def _count_train_crops(data: Path, seed: int) -> int:
    from hemoedge.data import yakimov

    parts = yakimov.split(yakimov.load(data).records, seed=seed)
    return sum(len(r.nail_xyxy()) for r in parts["train"])


def feasibility(entry: Entry, cfg: SweepConfig, train_crops: int, batch: int = 32) -> dict:
    """Parameters, fp32 MB and projected fine-tuning time from two timed optimiser steps
    (the second is the one counted: the first pays for allocation)."""
    import timm
    import torch

    try:
        model = timm.create_model(entry.backbone, pretrained=False, num_classes=0)
    except RuntimeError as e:
        return {"ok": False, "reason": f"timm has no backbone {entry.backbone!r} ({e})"}
    params = sum(p.numel() for p in model.parameters())
    mb = params * 4 / 1e6
    facts = {"params_m": params / 1e6, "fp32_mb": mb, "train_crops": train_crops}
    if mb > cfg.max_model_mb:
        return {**facts, "ok": False, "reason": f"fp32 weights {mb:.0f} MB > --max-model-mb "
                f"{cfg.max_model_mb:g} (too big to ship to a phone's browser)"}
    steps = (train_crops // batch) * cfg.fine_tune_epochs
    if steps == 0:
        return {**facts, "ok": True, "step_s": 0.0, "projected_train_s": 0.0, "reason": ""}
    dim = getattr(model, "head_hidden_size", None) or model.num_features
    head = torch.nn.Linear(dim, 1)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(batch, 3, entry.size, entry.size)
    model.train()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        loss = head(model(x)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    projected = times[-1] * steps
    facts.update(step_s=times[-1], projected_train_s=projected)
    if projected > cfg.max_train_min * 60:
        return {**facts, "ok": False, "reason": f"projected fine-tuning {projected / 60:.0f} min "
                f"({steps} steps x {times[-1]:.1f} s) > --max-train-min {cfg.max_train_min:g}"}
    return {**facts, "ok": True, "reason": ""}


# ------------------------------------------------------------------------------ an entry's folder

class EntryDir:
    """<out>/entries/<label>/: plan.json, train/, art/, results/<stage>.json, done/<stage>."""

    def __init__(self, out: Path, entry: Entry):
        self.root = out / "entries" / entry.label.replace(":", "-").replace("@", "-")
        self.train = self.root / "train"
        self.art = self.root / "art"
        self.plan = self.root / "plan.json"

    def results(self, stage: str) -> Path:
        return self.root / "results" / f"{stage.replace(' ', '-')}.json"

    def marker(self, stage: str) -> Path:
        return self.root / "done" / stage.replace(" ", "-")

    def done(self, stage: str) -> bool:
        return self.marker(stage).is_file()

    def finish(self, stage: str, command: str, seconds: float, **extra: str) -> None:
        self.marker(stage).parent.mkdir(parents=True, exist_ok=True)
        self.marker(stage).write_text(json.dumps({"command": command, "seconds": seconds,
                                                  **extra}) + "\n")

    def stage_info(self, stage: str) -> dict:
        return json.loads(self.marker(stage).read_text()) if self.done(stage) else {}
