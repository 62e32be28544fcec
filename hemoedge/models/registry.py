"""Recipe registry: `@register("name")` on a function returning a Recipe, `create(name)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from hemoedge.augment import CropJitter
from hemoedge.errors import HemoedgeError
from hemoedge.names import ANAEMIA_THRESHOLD_GDL


@dataclass(frozen=True)
class Recipe:
    name: str
    # detector: ultralytics YOLOv8 built from yaml, no hub weights
    detector_yaml: str = "yolov8n-nc2.yaml"  # hemoedge/models/, ultralytics yolov8.yaml scale n
    det_size: int = 320  # input side, px
    det_epochs: int = 25
    det_batch: int = 16
    det_hours: float = 0.0  # > 0: ultralytics' time budget, overrides det_epochs (LR schedule fits it)
    # estimator: timm backbone -> pooled features -> Ridge head folded into one Linear
    backbone: str = "mobilenetv4_conv_small"
    est_size: int = 224  # input side, px
    est_epochs: int = 10  # backbone fine-tuning on (jittered) nail crops before freezing
    est_batch: int = 32
    est_lr: float = 2e-3  # AdamW
    # crops as they arrive in the app (box error of an int8 detector, hand-held motion): training
    # draws a fresh jittered crop of every nail each epoch; the head is fit on the exact crops
    # plus this many jittered copies of each
    crop_jitter: CropJitter = CropJitter(edge_px=4.0, rotate_deg=5.0, blur_px=5)  # noqa: RUF009
    head_jitter_copies: int = 2
    # consistency: every epoch draws two jittered crops of each nail; besides the Hb loss on both,
    # the squared difference of their two answers (standardised Hb units) is penalised with this
    # weight, and the relative squared difference of their pooled features with
    # `feature_consistency`: the backbone learns features that do not move with the box. 0 and 0:
    # one draw per epoch, plain augmentation.
    consistency: float = 30.0
    feature_consistency: float = 3.0
    ridge_alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0, 1e4, 1e5)
    task: str = "regression"  # "regression" (Hb, Ridge) or "classification" (anaemic, logistic)
    # g/dL; classification: anaemic = Hb below it (WHO, women)
    anaemia_threshold: float = ANAEMIA_THRESHOLD_GDL
    est_init: str | None = None  # start from this estimator checkpoint's backbone (skips nothing:
    #                              est_epochs more fine-tuning, 0 = reuse its features as they are)

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification"):
            raise HemoedgeError(f"recipe {self.name}: task must be regression or classification")
        if not 0 < self.anaemia_threshold < 30:
            raise HemoedgeError(f"recipe {self.name}: anaemia threshold must be in (0, 30) g/dL, "
                                f"got {self.anaemia_threshold}")
        if self.head_jitter_copies < 0:
            raise HemoedgeError(f"recipe {self.name}: head_jitter_copies must be >= 0")
        if self.consistency < 0 or self.feature_consistency < 0:
            raise HemoedgeError(f"recipe {self.name}: consistency weights must be >= 0")
        if not self.est_lr > 0:
            raise HemoedgeError(f"recipe {self.name}: estimator learning rate must be > 0")
        if self.est_epochs < 0:
            raise HemoedgeError(f"recipe {self.name}: estimator epochs must be >= 0")
        if self.det_size % 32 or self.est_size % 32:
            raise HemoedgeError(f"recipe {self.name}: input sizes must be multiples of 32")


_RECIPES: dict[str, Callable[[], Recipe]] = {}


def register(name: str):
    def deco(fn: Callable[[], Recipe]) -> Callable[[], Recipe]:
        if name in _RECIPES:
            raise ValueError(f"recipe {name!r} registered twice")
        _RECIPES[name] = fn
        return fn
    return deco


def names() -> list[str]:
    return sorted(_RECIPES)


def create(name: str, **overrides) -> Recipe:
    if name not in _RECIPES:
        raise HemoedgeError(f"unknown recipe {name!r}; valid recipes: {', '.join(names())}")
    recipe = _RECIPES[name]()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(recipe, **overrides) if overrides else recipe


@register("default")
def _default() -> Recipe:
    return Recipe(name="default")


@register("tiny")
def _tiny() -> Recipe:
    """Seconds-scale recipe for tests: few epochs; same architectures."""
    return Recipe(name="tiny", det_epochs=1, det_batch=4, est_epochs=1, est_batch=8)
