"""One place that owns the models' I/O names, shapes and preprocessing.

Export, quantisation, the benchmarks and the web app all read these specs (the web app reads
them back from each ONNX file's metadata_props), so they cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from hemoedge.names import ANAEMIA_THRESHOLD_GDL

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASS_NAMES = ("nail", "skin")
OPSET = 13
METADATA_KEY = "hemoedge.spec"  # metadata_props key holding ModelSpec.to_json()


@dataclass(frozen=True)
class Preprocess:
    # geometry
    mode: str  # "letterbox" (detector) or "resize_crop" (estimator)
    size: int  # network input side, pixels
    resize_shorter: int = 0  # resize_crop only: shorter side before the centre crop, pixels
    pad_value: int = 114  # letterbox only: grey padding, 0-255
    interpolation: str = "bilinear"
    # pixel values
    channel_order: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0  # uint8 -> [0, 1] before mean/std
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.mode not in ("letterbox", "resize_crop"):
            raise ValueError(f"preprocess mode must be letterbox or resize_crop, got {self.mode!r}")
        if self.mode == "resize_crop" and self.resize_shorter < self.size:
            raise ValueError("resize_crop needs resize_shorter >= size")


@dataclass(frozen=True)
class ModelSpec:
    role: str  # "detector" or "estimator"
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]
    preprocess: Preprocess
    class_names: tuple[str, ...] = ()
    output_unit: str = ""  # estimator: "g/dL"
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> ModelSpec:
        d = json.loads(text)
        d["preprocess"] = Preprocess(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in d["preprocess"].items()})
        for k in ("input_shape", "output_shape", "class_names"):
            d[k] = tuple(d[k])
        return ModelSpec(**d)


def detector_spec(size: int = 320, num_classes: int = 2) -> ModelSpec:
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))  # 2100 at 320
    return ModelSpec(
        role="detector",
        input_name="images",
        input_shape=(1, 3, size, size),
        output_name="output0",
        output_shape=(1, 4 + num_classes, anchors),  # rows: cx, cy, w, h (input px), class scores
        preprocess=Preprocess(mode="letterbox", size=size),
        class_names=CLASS_NAMES[:num_classes],
    )


def estimator_spec(size: int = 224, task: str = "regression",
                   anaemia_threshold_gdl: float = ANAEMIA_THRESHOLD_GDL) -> ModelSpec:
    """regression: output `hb`, Hb in g/dL. classification: output `anaemia_logit`;
    sigmoid(logit) is the probability that Hb < anaemia_threshold_gdl (extra holds both)."""
    if task == "classification":
        return ModelSpec(
            role="estimator", input_name="input", input_shape=(1, 3, size, size),
            output_name="anaemia_logit", output_shape=(1, 1),
            preprocess=_estimator_preprocess(size), output_unit="logit",
            extra={"task": "classification", "anaemia_threshold_gdl": anaemia_threshold_gdl})
    return ModelSpec(
        role="estimator",
        input_name="input",
        input_shape=(1, 3, size, size),
        output_name="hb",
        output_shape=(1, 1),
        preprocess=_estimator_preprocess(size),
        output_unit="g/dL",
    )


def _estimator_preprocess(size: int) -> Preprocess:
    return Preprocess(mode="resize_crop", size=size, resize_shorter=round(size * 256 / 224),
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)


def task_of(spec: ModelSpec) -> str:
    """"regression" (Hb, g/dL) or "classification" (anaemia logit) for an estimator spec."""
    return spec.extra.get("task", "regression")
