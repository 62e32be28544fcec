"""Keep every library off the network at run time.

ultralytics resolves DNS at import, sends analytics, checks PyPI in train() and downloads
Arial.ttf unless told not to (docs/development.md). Its settings, and onnxruntime's and matplotlib's
files, live in a project-owned folder ($HEMOEDGE_HOME, else .hemoedge-home in the working tree,
or ~/.cache/hemoedge for an installed package).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def home() -> Path:
    """$HEMOEDGE_HOME, else .hemoedge-home in the source tree (an editable install), else the
    user's cache folder (an installed package: site-packages is no place for a cache)."""
    if os.environ.get("HEMOEDGE_HOME"):
        return Path(os.environ["HEMOEDGE_HOME"])
    tree = Path(__file__).resolve().parent.parent
    if (tree / "pyproject.toml").is_file():
        return tree / ".hemoedge-home"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hemoedge"


def configure() -> Path:
    """Set the environment before ultralytics is imported. Idempotent."""
    h = home()
    cfg = h / "ultralytics"
    (cfg / "Ultralytics").mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ.setdefault("MPLCONFIGDIR", str(h / "matplotlib"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TORCH_HOME", str(h / "torch"))
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    os.environ["DO_NOT_TRACK"] = "1"
    font = cfg / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        src = next((f for f in FONT_CANDIDATES if os.path.exists(f)), None)
        if src:
            shutil.copyfile(src, font)
    # ultralytics settings: sync (analytics) off, hub off; written before its first import
    settings = cfg / "Ultralytics" / "settings.json"
    if not settings.exists():
        import json

        settings.write_text(json.dumps({"sync": False, "hub": False, "wandb": False,
                                        "mlflow": False, "comet": False, "clearml": False,
                                        "tensorboard": False, "dvc": False, "neptune": False,
                                        "raytune": False}))
    return h
