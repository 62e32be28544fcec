"""Renderer for synthetic fingernail photos: hands on varied backgrounds, nail-bed colour from Hb.

Optical model (documented in the README, "Synthetic data"):

* Reflectance is computed per camera channel (R, G, B) in linear light with a Beer-Lambert
  term per absorber:  R_c = R0_c * exp(-sum_k  mu_k,c * c_k).
* Haemoglobin absorbs weakly in the red band and strongly in green and blue (oxy-Hb's
  Soret and Q bands), relative channel absorptivity EPS_HB = (0.07, 1.00, 0.75).
  The nail bed is a thin, well-perfused layer under a translucent plate:
      nail_c = PLATE_C * TISSUE_C * exp(-K_NAIL * (Hb / 15 g/dL) * perfusion * EPS_HB_c)
  so low Hb gives less green/blue absorption and the nail bed reads paler.
* Melanin absorbs more at shorter wavelengths, EPS_MEL = (0.28, 0.55, 0.95); skin reflectance
  carries melanin (0.1 light to 2.2 dark, per patient) plus a fixed skin blood term; the nail
  bed carries only 10 % of the patient's melanin (the nail bed has little pigment).
* Per session (MEASUREMENT_DATE) the camera and room are shared: illuminant colour temperature
  2700-7000 K and intensity, an incomplete white balance (gain = illuminant^-alpha with
  alpha 0.55-0.95, plus a per-channel error), lens blur, sensor noise and JPEG quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS_HB = np.array([0.07, 1.00, 0.75], np.float32)  # relative absorptivity per channel
EPS_MEL = np.array([0.28, 0.55, 0.95], np.float32)
TISSUE = np.array([0.98, 0.90, 0.88], np.float32)  # bloodless nail-bed reflectance
PLATE = np.array([0.97, 0.96, 0.95], np.float32)  # nail plate transmission (both ways)
SKIN0 = np.array([0.88, 0.72, 0.62], np.float32)  # melanin-free dermis reflectance
K_NAIL = 1.25  # nail-bed optical depth at 15 g/dL (green channel)
K_SKIN_BLOOD = 0.35  # skin blood optical depth (fixed, Hb-independent)
WHITE = np.array([0.95, 0.93, 0.90], np.float32)  # lunula / free edge


# Transcendental functions with the same bits on every x86-64 CPU. numpy's float64 exp and
# log, and its power with a non-integer exponent in any precision, run SVML code on AVX-512
# machines and other code on AVX2 ones, and the last bits differ: one synthetic photo in 23
# came out different (docs/quantize.md, "Same answer on every CPU"). Its float32 exp, log,
# sin and cos run one algorithm on both; x ** 2 is a multiply.
def _exp(x) -> np.ndarray:
    return np.exp(np.asarray(x, np.float32))


def _log(x) -> np.ndarray:
    return np.log(np.asarray(x, np.float32))


def _pow(x, p: float) -> np.ndarray:
    """x ** p for x >= 0 and a non-integer p (0 ** p = 0 for p > 0)."""
    x = np.asarray(x, np.float32)
    safe = np.where(x > 0, x, np.float32(1))
    return np.where(x > 0, _exp(np.float32(p) * _log(safe)), np.float32(0))


def kelvin_to_rgb(t: float) -> np.ndarray:
    """Approximate illuminant RGB of a black body at t kelvin, normalised to G = 1."""
    t = t / 100.0
    r = 255.0 if t <= 66 else 329.7 * float(_pow(t - 60, -0.1332))
    g = 99.47 * float(_log(t)) - 161.1 if t <= 66 else 288.1 * float(_pow(t - 60, -0.0755))
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5 * float(_log(t - 10)) - 305.0)
    rgb = np.clip(np.array([r, g, b], np.float32), 1, 255)
    return rgb / rgb[1]


def nail_reflectance(hb_gdl: float, perfusion: float = 1.0, melanin: float = 0.0) -> np.ndarray:
    return (PLATE * TISSUE * _exp(-K_NAIL * (hb_gdl / 15.0) * perfusion * EPS_HB)
            * _exp(-0.1 * melanin * EPS_MEL)).astype(np.float32)


def skin_reflectance(melanin: float) -> np.ndarray:
    return (SKIN0 * _exp(-melanin * EPS_MEL) * _exp(-K_SKIN_BLOOD * EPS_HB)).astype(np.float32)


@dataclass(frozen=True)
class Session:
    key: str  # MEASUREMENT_DATE
    kelvin: float  # illuminant colour temperature
    intensity: float  # exposure scale
    wb_alpha: float  # fraction of the illuminant cast the camera removes (in log space)
    wb_error: tuple[float, float, float]  # per-channel multiplicative white-balance error
    blur: float  # gaussian sigma, px
    noise: float  # sensor noise sigma, 8-bit units
    jpeg_quality: int
    bg_bias: int  # preferred background family of this room

    def camera_gain(self) -> np.ndarray:
        illum = kelvin_to_rgb(self.kelvin)
        return (illum * _pow(illum, -self.wb_alpha) * np.array(self.wb_error, np.float32)
                * self.intensity).astype(np.float32)


def random_session(rng: np.random.Generator, key: str) -> Session:
    return Session(
        key=key,
        kelvin=float(rng.uniform(2700, 7000)),
        intensity=float(rng.uniform(0.75, 1.2)),
        wb_alpha=float(rng.uniform(0.55, 0.95)),
        wb_error=tuple(float(v) for v in rng.normal(1.0, 0.04, 3)),
        blur=float(rng.uniform(0.0, 1.3)),
        noise=float(rng.uniform(1.0, 5.0)),
        jpeg_quality=int(rng.integers(62, 96)),
        bg_bias=int(rng.integers(0, 4)),
    )


@dataclass(frozen=True)
class Patient:
    hb_gdl: float
    melanin: float
    perfusion: tuple[float, float, float]  # per finger capillary refill / pressure
    seed: int


# ------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class Finger:
    tip: tuple[float, float]  # (x, y) of the fingertip, px
    angle: float  # radians, 0 = pointing up
    radius: float  # half width, px
    length: float  # tip to knuckle, px

    def frame(self, xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel grid -> (u along the finger from the tip, v across), px."""
        dx, dy = xx - self.tip[0], yy - self.tip[1]
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        u = dx * sa + dy * ca  # direction (sin a, cos a) points down the finger
        v = dx * ca - dy * sa
        return u, v


def _soft(d: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Signed distance (positive inside) -> anti-aliased coverage 0..1."""
    return np.clip(d / width + 0.5, 0.0, 1.0).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    from PIL import Image

    small = rng.normal(0, 1, (max(2, h // cell), max(2, w // cell))).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, np.float32)


def background(rng: np.random.Generator, h: int, w: int, family: int) -> np.ndarray:
    """Linear-light RGB background: 0 wood, 1 fabric, 2 paper, 3 dark cloth."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if family == 0:
        base = np.array(rng.choice([[0.45, 0.28, 0.15], [0.60, 0.42, 0.25], [0.30, 0.18, 0.10]]))
        warp = _smooth_noise(rng, h, w, 60) * 12
        grain = 0.5 + 0.5 * np.sin((yy + warp) / rng.uniform(3, 7) + _smooth_noise(rng, h, w, 8))
        tex = 0.8 + 0.25 * grain + 0.05 * _smooth_noise(rng, h, w, 2)
        img = base[None, None] * tex[..., None]
    elif family == 1:
        c1, c2 = rng.uniform(0.1, 0.7, 3), rng.uniform(0.1, 0.7, 3)
        period = rng.uniform(10, 40)
        stripes = (np.sin(xx / period * np.pi) * np.sin(yy / period * np.pi) > 0).astype(np.float32)
        img = c1 * stripes[..., None] + c2 * (1 - stripes[..., None])
        img = img * (0.9 + 0.1 * _smooth_noise(rng, h, w, 3))[..., None]
    elif family == 2:
        c = rng.uniform(0.7, 0.92) * np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.88, 1.0)])
        grad = 1.0 - 0.25 * ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w * w / 4)
        img = c[None, None] * grad[..., None] * (1 + 0.02 * _smooth_noise(rng, h, w, 4))[..., None]
    else:
        c = rng.uniform(0.03, 0.15, 3)
        img = c[None, None] * (1 + 0.3 * _smooth_noise(rng, h, w, 6))[..., None]
    return np.clip(img, 0.005, 1.0).astype(np.float32)


def hand_layout(rng: np.random.Generator, w: int, h: int) -> list[Finger]:
    scale = rng.uniform(0.85, 1.15)
    radius = 34.0 * scale
    spacing = radius * rng.uniform(2.05, 2.4)
    cx = w / 2 + rng.uniform(-40, 40)
    base_angle = rng.uniform(-0.2, 0.2)
    fingers = []
    for i, dx in enumerate((-1, 0, 1)):
        tip_y = h * 0.18 + rng.uniform(-20, 25) + (abs(dx) * radius * 0.5 if i != 1 else -6)
        a = base_angle + dx * rng.uniform(0.02, 0.09)
        fingers.append(Finger(tip=(cx + dx * spacing + np.sin(base_angle) * 40, float(tip_y)),
                              angle=float(a), radius=float(radius * rng.uniform(0.93, 1.07)),
                              length=float(h * 0.62)))
    return fingers


def render(patient: Patient, session: Session, w: int = 640, h: int = 480,
           offset: tuple[float, float] = (0.0, 0.0),
           rng_frame: np.random.Generator | None = None):
    """Render one photo. Returns (linear RGB float image before the camera pipeline,
    nail boxes, skin boxes) with boxes as [top, left, bottom, right] int px."""
    rng = np.random.default_rng(patient.seed)
    fam = session.bg_bias if rng.random() < 0.6 else int(rng.integers(0, 4))
    img = background(rng, h, w, fam)
    fingers = hand_layout(rng, w, h)
    ox, oy = offset
    fingers = [Finger((f.tip[0] + ox, f.tip[1] + oy), f.angle, f.radius, f.length) for f in fingers]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    skin = skin_reflectance(patient.melanin)
    tone = _smooth_noise(rng, h, w, 14) * 0.04

    # palm: a wide rounded blob under the knuckles
    knuckle_y = np.mean([f.tip[1] + f.length * np.cos(f.angle) for f in fingers])
    pcx = np.mean([f.tip[0] for f in fingers])
    pw = 3.4 * fingers[0].radius * 1.25
    palm_d = np.minimum(pw - np.abs(xx - pcx), (yy - (knuckle_y - 40)))
    palm_cov = _soft(palm_d, 2.0)
    palm_shade = (0.75 + 0.25 * np.clip(1 - np.abs(xx - pcx) / pw, 0, 1))
    palm_col = skin[None, None] * (palm_shade * (1 + tone))[..., None]
    img = img * (1 - palm_cov[..., None]) + palm_col * palm_cov[..., None]
    # soft contact shadow around the hand
    nail_boxes, skin_boxes = [], []
    for fi, f in enumerate(fingers):
        u, v = f.frame(xx, yy)
        r = f.radius
        # capsule: distance to the segment u in [r, length] on the axis
        uc = np.clip(u, r, f.length)
        d = r - np.sqrt((u - uc) ** 2 + v ** 2)
        cov = _soft(d, 1.2)
        shadow = _soft(d + 6, 8.0) * (1 - cov) * 0.35
        img = img * (1 - shadow[..., None])
        across = np.clip(np.abs(v) / r, 0, 1)
        shade = 0.5 + 0.5 * np.sqrt(1 - across ** 2)  # cylinder shading
        shade *= 1 - 0.25 * np.clip((r * 0.6 - u) / (r * 0.6), 0, 1)  # tip falls off
        crease = np.zeros_like(u)
        for cu in (r * 3.3, r * 5.4):  # finger joints
            crease += _exp(-((u - cu) / 2.0) ** 2) * 0.18 * (1 - (across ** 2) ** 2)
        col = skin[None, None] * (shade * (1 + tone) * (1 - crease))[..., None]
        img = img * (1 - cov[..., None]) + col * cov[..., None]

        # nail: a rounded plate from u0 to u1, half width a
        a = r * rng.uniform(0.66, 0.76)
        u0, u1 = r * rng.uniform(0.12, 0.25), r * rng.uniform(1.75, 2.0)
        um, bl = (u0 + u1) / 2, (u1 - u0) / 2
        du = np.abs(u - um) / bl
        sup = _pow(np.abs(v) / a, 2.6) + du * du * du
        nail_cov = _soft((1 - sup) * min(a, bl) * 0.5, 0.8) * cov
        bed = nail_reflectance(patient.hb_gdl, patient.perfusion[fi], patient.melanin)
        t = np.clip((u - u0) / (u1 - u0), 0, 1)  # 0 at the free edge, 1 at the cuticle
        free_edge = _pow(np.clip(1 - t / rng.uniform(0.12, 0.2), 0, 1), 0.7)
        lunula_r = rng.uniform(0.2, 0.32)
        lunula = _soft((lunula_r * a - np.sqrt((v * 0.8) ** 2 + ((u - u1) * 1.2) ** 2)), 2.0)
        mix = np.maximum(free_edge, lunula * 0.65)[..., None]
        ncol = bed[None, None] * (1 - mix) + WHITE[None, None] * mix
        ncol = ncol * (0.82 + 0.18 * np.sqrt(1 - np.clip(np.abs(v) / a, 0, 1) ** 2))[..., None]
        ncol = ncol * (1 + 0.02 * tone[..., None])
        spec_u, spec_v = um + rng.uniform(-0.2, 0.2) * bl, rng.uniform(-0.4, 0.4) * a
        spec = _exp(-(((u - spec_u) / (0.45 * bl)) ** 2 + ((v - spec_v) / (0.12 * a)) ** 2))
        ncol = ncol + 0.5 * spec[..., None] * rng.uniform(0.3, 1.0)
        cuticle = _exp(-((u - u1) / 1.6) ** 2) * (np.abs(v) < a) * 0.35
        img = img * (1 - nail_cov[..., None]) + ncol * nail_cov[..., None]
        img = img * (1 - cuticle[..., None] * cov[..., None])

        nail_boxes.append(_box_of(nail_cov > 0.5))
        # skin patch: middle of the second phalanx, nail-sized
        su = u1 + r * 1.25
        patch = (np.abs(u - su) < bl * 0.8) & (np.abs(v) < a * 0.8)
        skin_boxes.append(_box_of(patch & (cov > 0.99)))
    return np.clip(img, 0, 1.5), nail_boxes, skin_boxes


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0, 0, 0, 0]
    return [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1]


def camera(linear: np.ndarray, session: Session, rng: np.random.Generator) -> np.ndarray:
    """Session camera pipeline: illuminant, white balance, exposure, sRGB, blur, noise.
    Returns uint8 RGB (JPEG compression happens on save)."""
    from PIL import Image, ImageFilter

    x = linear * session.camera_gain()[None, None]
    x = np.clip(x, 0, 1)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * _pow(x, 1 / 2.4) - 0.055)
    img8 = np.clip(srgb * 255 + 0.5, 0, 255).astype(np.uint8)
    if session.blur > 0.05:
        img8 = np.asarray(Image.fromarray(img8).filter(ImageFilter.GaussianBlur(session.blur)))
    noisy = img8.astype(np.float32) + rng.normal(0, session.noise, img8.shape)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
