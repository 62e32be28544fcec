"""`hemoedge train`: train the recipe's detector and estimator on a Yakimov-layout set.

Detector: ultralytics' own trainer on YOLO-format labels written from the set's train/val split.
Estimator: the backbone first learns Hb on nail crops of the train split (AdamW, Huber loss on
standardised Hb) drawn afresh every epoch the way they arrive in the app — box edges moved,
small rotations, motion blur (hemoedge.augment) — so its answer does not move with the box it is
given; it is then frozen, and a closed-form head is fit on its pooled features of the exact crops
plus `head_jitter_copies` jittered copies of each, and folded into the final Linear layer:
Ridge with a consistency penalty (alpha by patient-grouped 5-fold CV) for Hb regression, or
LogisticRegressionCV (anaemic = Hb below the recipe's threshold) for anaemia classification,
whose exported output is then the logit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hemoedge import anaemia, offline
from hemoedge.augment import CropJitter, jittered_crop
from hemoedge.data import yakimov
from hemoedge.errors import HemoedgeError
from hemoedge.models import detector as det_mod
from hemoedge.models import estimator as est_mod
from hemoedge.models.registry import Recipe, create
from hemoedge.preprocess import crop, resize_crop
from hemoedge.spec import estimator_spec

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ detector


def write_yolo_dataset(parts: dict[str, list[yakimov.Record]], out: Path) -> Path:
    """images/{train,val}/ (symlinks) + labels/{train,val}/ + data.yaml; returns data.yaml."""
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for rec in parts[split]:
            img = out / "images" / split / rec.photo.name
            if not img.exists():
                os.symlink(rec.photo.resolve(), img)
            with yakimov.open_image(rec.photo) as im:
                w, h = im.size
            (out / "labels" / split / (rec.photo.stem + ".txt")).write_text(
                "\n".join(yakimov.yolo_labels(rec, w, h)) + "\n")
    data = out / "data.yaml"
    data.write_text(json.dumps({"path": str(out.resolve()), "train": "images/train",
                                "val": "images/val", "names": {0: "nail", 1: "skin"}}))
    return data


def train_detector(recipe: Recipe, parts, out: Path, seed: int = 0) -> tuple[Path, dict]:
    offline.configure()
    from ultralytics import YOLO

    data = write_yolo_dataset(parts, out / "yolo-data")
    model = YOLO(str(det_mod.YAML), task="detect")
    model.train(data=str(data), imgsz=recipe.det_size, epochs=recipe.det_epochs,
                batch=recipe.det_batch, device="cpu", workers=2, pretrained=False, amp=False,
                plots=False, project=str((out / "ultralytics").resolve()), name="detector",
                exist_ok=True, seed=seed, deterministic=True, verbose=False, patience=100,
                cache="ram", **({"time": recipe.det_hours} if recipe.det_hours > 0 else {}))
    best = out / "ultralytics" / "detector" / "weights" / "best.pt"
    if not best.is_file():
        raise HemoedgeError(f"ultralytics training wrote no {best}")
    trained, _ = det_mod.load(best, trust_pickle=True)  # ultralytics' own file, written just now
    metrics = {k: float(v) for k, v in (model.trainer.metrics or {}).items()}
    path = det_mod.save(trained, out / "detector.pt", imgsz=recipe.det_size,
                        extra={"val_metrics": metrics})
    return path, metrics


# ------------------------------------------------------------------------------ estimator


def crop_tensors(records: list[yakimov.Record], size: int) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """Ground-truth nail crops -> (N, 3, S, S) float32 normalised, Hb (N,), patient index (N,)."""
    crops = CropSampler(records, size, CropJitter(edge_px=0.0))
    return crops.exact(), crops.hb, crops.patients


class CropSampler:
    """Nail crops of a set of records as estimator inputs: exact (`exact()`) or jittered, a
    fresh draw per call (`draw(rng)`). Photos are decoded once and kept in memory."""

    def __init__(self, records: list[yakimov.Record], size: int, jitter: CropJitter):
        self.spec = estimator_spec(size)
        self.jitter = jitter
        self.images: list[np.ndarray] = []
        self.boxes: list[tuple[int, tuple[float, float, float, float]]] = []
        hb, pids = [], []
        for i, rec in enumerate(records):
            self.images.append(yakimov.read_rgb(rec.photo))
            for b in rec.nail_xyxy():
                self.boxes.append((i, tuple(map(float, b))))
                hb.append(rec.hb_gdl)
                pids.append(i)
        self.hb = np.asarray(hb, np.float32)  # (N,) g/dL, one per nail
        self.patients = np.asarray(pids)  # (N,) record index

    def __len__(self) -> int:
        return len(self.boxes)

    def exact(self) -> np.ndarray:
        """(N, 3, S, S) normalised crops of the ground-truth boxes."""
        return np.stack([resize_crop(crop(self.images[i], b), self.spec.preprocess)[0]
                         for i, b in self.boxes])

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """(N, 3, S, S) one jittered crop per nail (the exact crops if jitter is off)."""
        if not self.jitter.active:
            return self.exact()
        return np.stack([resize_crop(jittered_crop(self.images[i], b, rng, self.jitter),
                                     self.spec.preprocess)[0] for i, b in self.boxes])


def _init_model(recipe: Recipe) -> tuple[est_mod.Estimator, bool]:
    """A fresh backbone, or (recipe.est_init) the backbone of an earlier estimator checkpoint;
    and whether its head answers in g/dL (an earlier regression head)."""
    if not recipe.est_init:
        return est_mod.Estimator(recipe.backbone), False
    model, info = est_mod.load(recipe.est_init)
    if info["backbone"] != recipe.backbone or info["input_size"] != recipe.est_size:
        raise HemoedgeError(f"{recipe.est_init}: holds {info['backbone']} at "
                            f"{info['input_size']} px; the recipe wants {recipe.backbone} at "
                            f"{recipe.est_size} px")
    return model, info["task"] == "regression"


def fine_tune(model: est_mod.Estimator, recipe: Recipe, crops: CropSampler, seed: int,
              head_in_gdl: bool = False) -> dict:
    """The backbone learns Hb on the train crops (AdamW, Huber on standardised Hb), a fresh
    jittered draw of every nail each epoch. Both task types use this: Hb is what the photos
    carry, the anaemia label is a threshold on it.

    With recipe.consistency or recipe.feature_consistency > 0, each epoch draws two jittered
    crops of every nail and a batch holds both: Huber on each, plus consistency * mean squared
    difference of their two answers, plus feature_consistency * the squared difference of their
    pooled features relative to the features' mean square. The answer then stops following
    the box (measured: `hemoedge eval`'s crop sensitivity). head_in_gdl: the model's head was
    fit in g/dL (an earlier regression checkpoint); it is rescaled to standardised units first,
    so fine-tuning starts from its answers instead of from a shock."""
    y_tr = crops.hb
    if recipe.est_epochs == 0 or len(crops) < recipe.est_batch:
        return {"steps": 0, "seconds": 0.0}
    mu, sd = float(y_tr.mean()), float(y_tr.std() + 1e-6)
    if head_in_gdl:
        with torch.no_grad():
            model.head.weight.div_(sd)
            model.head.bias.sub_(mu).div_(sd)
    paired = recipe.consistency > 0 or recipe.feature_consistency > 0
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.est_lr, weight_decay=0.05)
    per_epoch = len(crops) // recipe.est_batch
    steps = per_epoch * recipe.est_epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.est_lr, total_steps=steps,
                                                pct_start=0.15)
    yt = torch.from_numpy((y_tr - mu) / sd)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    from rich.progress import Progress

    t0 = time.perf_counter()
    parts = {"huber": 0.0, "consistency": 0.0, "feature_consistency": 0.0}
    with Progress(transient=True) as prog:
        task = prog.add_task(f"estimator backbone {recipe.backbone}", total=steps)
        for epoch in range(recipe.est_epochs):
            draws = [torch.from_numpy(crops.draw(rng)) for _ in range(2 if paired else 1)]
            model.train()
            perm = torch.randperm(len(draws[0]), generator=gen)
            parts = dict.fromkeys(parts, 0.0)
            for b in range(per_epoch):  # drop_last: BatchNorm needs > 1
                idx = perm[b * recipe.est_batch:(b + 1) * recipe.est_batch]
                n = len(idx)
                flip = torch.rand(n, generator=gen) < 0.5  # nails are left-right symmetric
                xb = torch.cat([torch.where(flip[:, None, None, None], d[idx].flip(3), d[idx])
                                for d in draws])
                feats = model.features(xb)
                pred = model.head(feats)[:, 0]
                terms = {"huber": sum(torch.nn.functional.huber_loss(
                    pred[k * n:(k + 1) * n], yt[idx], delta=1.0) for k in range(len(draws)))}
                if paired:
                    terms["consistency"] = ((pred[:n] - pred[n:]) ** 2).mean()
                    terms["feature_consistency"] = (((feats[:n] - feats[n:]) ** 2).mean()
                                                    / (feats.detach().pow(2).mean() + 1e-6))
                loss = (terms["huber"] + recipe.consistency * terms.get("consistency", 0.0)
                        + recipe.feature_consistency * terms.get("feature_consistency", 0.0))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                for k, v in terms.items():
                    parts[k] += float(v.detach()) / per_epoch
                prog.advance(task)
            log.info("estimator epoch %d/%d: mean %s (%.0f s)", epoch + 1, recipe.est_epochs,
                     ", ".join(f"{k} {v:.4f}" for k, v in parts.items() if v or k == "huber"),
                     time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    log.info("estimator backbone: %d steps in %.0f s", steps, seconds)
    return {"steps": steps, "seconds": seconds, "paired_crops": paired,
            **{f"last_epoch_{k}": v for k, v in parts.items()}}


def consistent_ridge(f: np.ndarray, y: np.ndarray, alpha: float, consistency: float,
                     copies: int) -> tuple[np.ndarray, float]:
    """Ridge with a consistency penalty, closed form. `f` stacks `copies` blocks of the same N
    nails (the exact crops, then jittered copies); the weights w minimise

        mean((f - mean f) w - (y - mean y))^2 + alpha |w|^2 / n + consistency * mean((f_i - f_j) w)^2

    over every pair of copies (i, j) of a nail — the head's share of what the backbone was
    trained for: an answer that does not move between crops of one nail. consistency = 0 is
    plain Ridge. Returns (w, intercept)."""
    n = len(f)
    mu, ym = f.mean(0), float(y.mean())
    fc = f - mu
    a = fc.T @ fc / n + alpha * np.eye(f.shape[1]) / n
    if consistency > 0 and copies > 1:
        blocks = f.reshape(copies, n // copies, f.shape[1])
        d = np.concatenate([blocks[i] - blocks[j] for i in range(copies) for j in range(i)])
        a += consistency * (d.T @ d) / len(d)
    w = np.linalg.solve(a, fc.T @ (y - ym) / n)
    return w, ym - float(mu @ w)


def fit_ridge(model: est_mod.Estimator, recipe: Recipe, f_tr: np.ndarray, y_tr: np.ndarray,
              groups: np.ndarray, copies: int = 1):
    """Ridge on frozen features with the recipe's consistency weight (consistent_ridge), folded
    into the final Linear. Alpha by 5-fold CV grouped by patient (mean squared error on the
    held-out patients' crops): the copies of one nail are near-duplicates, and leave-one-out
    would let each copy be predicted from its twins (too little regularisation)."""
    from sklearn.model_selection import GroupKFold

    n = len(f_tr) // copies
    nail = np.tile(np.arange(n), copies)
    g = groups[:n]
    folds = min(5, len(np.unique(g)))

    def fit(rows_nails: np.ndarray, alpha: float):
        rows = np.concatenate([rows_nails + k * n for k in range(copies)])
        return consistent_ridge(f_tr[rows], y_tr[rows], alpha, recipe.consistency, copies)

    alpha = recipe.ridge_alphas[0]
    if folds >= 2 and len(recipe.ridge_alphas) > 1:
        split = list(GroupKFold(folds).split(np.zeros(n), y_tr[:n], g))
        cv = []
        for a in recipe.ridge_alphas:
            err = 0.0
            for tr, te in split:
                w, b = fit(tr, a)
                held = np.isin(nail, te)
                err += float(np.sum((f_tr[held] @ w + b - y_tr[held]) ** 2))
            cv.append(err)
        alpha = recipe.ridge_alphas[int(np.argmin(cv))]
    w, b = fit(np.arange(n), alpha)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(w.astype(np.float32))[None])
        model.head.bias.fill_(float(b))
    return (lambda f: f @ w + b), {"ridge_alpha": float(alpha),
                                   "ridge_consistency": float(recipe.consistency)}


def fit_logistic(model: est_mod.Estimator, recipe: Recipe, f_tr: np.ndarray, y_tr: np.ndarray,
                 groups: np.ndarray, seed: int):
    """Anaemic (Hb < threshold) vs not: standardised features -> LogisticRegressionCV (C by
    patient-grouped 5-fold ROC AUC, balanced classes), folded into the final Linear so the
    exported model outputs the logit; sigmoid(logit) >= 0.5 is the anaemic decision."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedGroupKFold

    labels = (y_tr < recipe.anaemia_threshold).astype(int)
    if labels.min() == labels.max():
        raise HemoedgeError(f"every training patient is {'anaemic' if labels[0] else 'not anaemic'}"
                            f" at {recipe.anaemia_threshold} g/dL; a classifier needs both")
    # folds by patient, each holding both classes where the counts allow
    # (each fold needs a patient of each class; crops of one patient share a group)
    per_class = min(len(np.unique(groups[labels == c])) for c in (0, 1))
    folds = int(max(2, min(5, per_class)))
    # standardise with a floored scale: a nearly constant feature would otherwise get a huge
    # folded weight (and the exported Linear an fp16/int8 range it cannot hold)
    mu = f_tr.mean(0)
    sd = f_tr.std(0)
    if float(np.median(sd)) < 1e-6:
        log.warning("%s: the pooled features are nearly constant (median std %.1e): the backbone "
                    "has collapsed; the classifier's weights will be huge and its logits fragile "
                    "in fp16/int8 (train longer)", recipe.backbone, float(np.median(sd)))
    sd = np.maximum(sd, 1e-3 * max(float(np.median(sd)), 1e-12))
    cv = list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
              .split(f_tr, labels, groups))
    clf = LogisticRegressionCV(Cs=np.logspace(-4, 2, 7), cv=cv, scoring="roc_auc",
                               class_weight="balanced", max_iter=2000,
                               random_state=seed).fit((f_tr - mu) / sd, labels)
    w = clf.coef_[0] / sd  # logit = coef.(f - mu)/sd + b, folded into one Linear
    b = float(clf.intercept_[0] - np.dot(w, mu))
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(w.astype(np.float32))[None])
        model.head.bias.fill_(b)
    return (lambda f: f @ w + b), {"logistic_c": float(np.ravel(clf.C_)[0])}


def train_estimator(recipe: Recipe, parts, out: Path, seed: int = 0) -> tuple[Path, dict]:
    torch.manual_seed(seed)
    train = CropSampler(parts["train"], recipe.est_size, recipe.crop_jitter)
    x_va, y_va, p_va = crop_tensors(parts["val"], recipe.est_size)
    model, head_in_gdl = _init_model(recipe)
    tuned = fine_tune(model, recipe, train, seed, head_in_gdl=head_in_gdl)

    # freeze, then the closed-form head on pooled features: the exact crops plus jittered
    # copies, so the head too prefers what does not move with the box
    model.eval()
    rng = np.random.default_rng(seed + 1)
    f_tr = np.concatenate([_features(model, train.exact())]
                          + [_features(model, train.draw(rng))
                             for _ in range(recipe.head_jitter_copies)])
    copies = 1 + recipe.head_jitter_copies
    y_tr, g_tr = np.tile(train.hb, copies), np.tile(train.patients, copies)
    f_va = _features(model, x_va)
    if recipe.task == "regression":
        predict, head = fit_ridge(model, recipe, f_tr, y_tr, g_tr, copies)
    else:
        predict, head = fit_logistic(model, recipe, f_tr, y_tr, g_tr, seed)
    pred_va = predict(f_va)
    per_patient = {p: float(np.median(pred_va[p_va == p])) for p in np.unique(p_va)}
    truth = {p: float(y_va[p_va == p][0]) for p in per_patient}
    metrics: dict = {"train_crops": len(train), "head_fit_crops": len(f_tr),
                     "crop_jitter": recipe.crop_jitter.describe(), "fine_tune_steps": tuned["steps"],
                     "fine_tune_s": tuned["seconds"], "consistency": recipe.consistency,
                     "feature_consistency": recipe.feature_consistency,
                     **{k: v for k, v in tuned.items() if k.startswith("last_epoch_")}, **head}
    if recipe.task == "regression":
        metrics.update({
            "val_crop_mae": float(np.mean(np.abs(pred_va - y_va))),
            "val_patient_mae": float(np.mean([abs(per_patient[p] - truth[p])
                                              for p in per_patient])),
            "val_mean_baseline_mae": float(np.mean(np.abs(y_va - y_tr.mean())))})
    else:
        cm = anaemia.metrics(list(per_patient.values()), list(truth.values()),
                                    recipe.anaemia_threshold)
        metrics.update({f"val_patient_{k}": v for k, v in cm.items()})
    extra = {"val_metrics": metrics, **head}
    if recipe.task == "classification":
        extra["anaemia_threshold_gdl"] = recipe.anaemia_threshold
    path = est_mod.save(model, out / "estimator.pt", input_size=recipe.est_size, task=recipe.task,
                        extra=extra)
    return path, metrics


@torch.no_grad()
def _features(model: est_mod.Estimator, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([model.features(torch.from_numpy(x[i:i + batch])).numpy()
                           for i in range(0, len(x), batch)])


# ------------------------------------------------------------------------------ entry


def run(recipe: Recipe, data: Path, out: Path, seed: int = 0, only: str | None = None) -> dict:
    ds = yakimov.load(data)
    parts = yakimov.split(ds.records, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"recipe": asdict(recipe), "data": str(data), "seed": seed,
                     "split_sizes": {k: len(v) for k, v in parts.items()}}
    if only in (None, "estimator"):
        path, m = train_estimator(recipe, parts, out, seed)
        summary["estimator"] = {"path": str(path), **m}
        log.info("estimator: %s", m)
    if only in (None, "detector"):
        path, m = train_detector(recipe, parts, out, seed)
        summary["detector"] = {"path": str(path), **m}
        log.info("detector: %s", m)
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


@dataclass(frozen=True)
class TrainConfig:
    """`hemoedge train`: the recipe by name, with the command line's overrides (None: the
    recipe's own value), the data (None: synthesise a set into OUT/data) and the output folder."""
    out: Path
    data: Path | None = None
    recipe: str = "default"
    backbone: str | None = None
    only: str | None = None  # "detector" or "estimator": train one model only
    det_epochs: int | None = None
    est_epochs: int | None = None
    est_size: int | None = None
    task: str | None = None
    anaemia_threshold: float | None = None
    est_init: str | None = None  # a checkpoint path (kept as text: train records its recipe)
    est_lr: float | None = None
    consistency: float | None = None
    feature_consistency: float | None = None
    det_hours: float | None = None
    seed: int = 0


def config_from_args(args) -> TrainConfig:
    """TrainConfig from the parsed command line (options a caller's namespace may lack keep
    their defaults)."""
    opt = {k: getattr(args, k) for k in ("est_size", "task", "anaemia_threshold", "est_init",
                                         "est_lr", "consistency", "feature_consistency")
           if getattr(args, k, None) is not None}
    return TrainConfig(out=Path(args.out), data=Path(args.data) if args.data else None,
                       recipe=args.recipe, backbone=args.backbone, only=args.only,
                       det_epochs=args.det_epochs, est_epochs=args.est_epochs,
                       det_hours=args.det_hours, seed=args.seed, **opt)


def cli(args) -> int:
    return main(config_from_args(args))


def main(cfg: TrainConfig) -> int:
    """`hemoedge train` once its config is known (also what `sweep` calls)."""
    # HEMOEDGE_TRAIN_THREADS=1 on a shared machine: oversubscribed OpenMP threads thrash
    torch.set_num_threads(int(os.environ.get("HEMOEDGE_TRAIN_THREADS", os.cpu_count() or 1)))
    recipe = create(cfg.recipe, backbone=cfg.backbone, det_epochs=cfg.det_epochs,
                    est_epochs=cfg.est_epochs, det_hours=cfg.det_hours, est_size=cfg.est_size,
                    task=cfg.task, anaemia_threshold=cfg.anaemia_threshold,
                    est_init=cfg.est_init, est_lr=cfg.est_lr, consistency=cfg.consistency,
                    feature_consistency=cfg.feature_consistency)
    out, data = cfg.out, cfg.data
    if data is None:
        from hemoedge.data.synth import synthesize

        data = out / "data"
        if not (data / "metadata.csv").is_file():
            if data.exists():
                shutil.rmtree(data)
            synthesize(data, patients=800, sessions=40, seed=cfg.seed + 1)
    summary = run(recipe, data, out, seed=cfg.seed, only=cfg.only)
    for role in ("detector", "estimator"):
        if role in summary:
            print(f"{role}: {summary[role]['path']}")
            for k, v in summary[role].items():
                if k != "path" and isinstance(v, float) and math.isfinite(v):
                    print(f"  {k}: {v:.4f}")
    return 0
