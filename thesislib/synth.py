"""Synthetic fundus photographs with expert attention maps, written in the LAG layout.

The generator draws a fundus (dark surround, reddish textured retina with uneven illumination,
vessels, macula) and an optic disc with a cup. The class evidence is the cup-to-disc ratio (large
for glaucoma) and thinning of the neuroretinal rim; the expert map is a soft, noisy blob over the
disc region, like an ophthalmologist's fixation map. Distractors unrelated to the class (bright
spots, vignetting, blur, colour and noise jitter) make the task non-trivial, a label-noise rate
keeps accuracy below 100 %, and an optional spurious cue (a marker near a corner, far from the
disc, correlated with the filed label) serves shortcut experiments.

Every image is drawn from its own generator seeded with ``(seed, index)``, so the same seed gives
byte-identical files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from thesislib.layout import CLASSES, IMAGE_DIR, MAP_DIR

__all__ = ["SynthSpec", "synthesize", "render_sample", "MARKER_INSET", "MARKER_SIDE"]

GROUND_TRUTH = "ground_truth.csv"
# The spurious marker: a light grey square of MARKER_SIDE of the photo's side (at least 2 px), inset
# MARKER_INSET of the side from both edges of a random corner. At that inset the training
# augmentation (random crop, rotation up to 15 degrees with black corners) keeps it in 99.9 % of
# draws; in the very corner it would survive in 5-34 % of them (224 and 64 px) and the cue would
# hardly exist for the model.
MARKER_INSET = 0.15
MARKER_SIDE = 1 / 20
SPEC_FILE = "synth.json"


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic data set.

    Args:
        n: number of images.
        size: side of the square photos in pixels.
        seed: master seed; the same spec gives byte-identical files.
        glaucoma_fraction: share of suspicious-glaucoma images (LAG: 1711 of 4854, about 0.35).
        label_noise: probability that an image is filed under the wrong class.
        spurious: None (off) or p in [0.5, 1]: a marker near a corner, far from the disc (see
            MARKER_INSET), appears with probability p on images filed as glaucoma and 1 - p on the
            others. It follows the filed label, the one a model learns from, so with label noise it
            predicts the labels better than the disc does: a shortcut.
        map_size: side of the attention maps; None keeps LAG's ratio (112 px for 500 px photos).
        quality: JPEG quality.
    """

    n: int = 2000
    size: int = 128
    seed: int = 0
    glaucoma_fraction: float = 0.35
    label_noise: float = 0.05
    spurious: float | None = None
    map_size: int | None = None
    quality: int = 92

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 2:
            raise ValueError(f"n: expected an integer >= 2, found {self.n!r}")
        if not isinstance(self.size, int) or self.size < 32:
            raise ValueError(f"size: expected an integer >= 32 pixels, found {self.size!r}")
        if not 0.0 < self.glaucoma_fraction < 1.0:
            raise ValueError(f"glaucoma_fraction: expected a value in (0, 1), found {self.glaucoma_fraction!r}")
        if not 0.0 <= self.label_noise < 0.5:
            raise ValueError(f"label_noise: expected a value in [0, 0.5), found {self.label_noise!r}")
        if self.spurious is not None and not 0.5 <= self.spurious <= 1.0:
            raise ValueError(f"spurious: expected None or a value in [0.5, 1], found {self.spurious!r}")
        if self.map_size is not None and self.map_size < 8:
            raise ValueError(f"map_size: expected None or an integer >= 8, found {self.map_size!r}")

    @property
    def resolved_map_size(self) -> int:
        return self.map_size or max(16, round(self.size * 112 / 500))


def _lowfreq(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse random grid upsampled bicubically."""
    grid = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    img = Image.fromarray(grid, "L").resize((size, size), Image.BICUBIC)
    return np.asarray(img, np.float32) / 127.5 - 1.0


def _blob(xx, yy, cx, cy, sx, sy) -> np.ndarray:
    return np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))


def _soft_disc(xx, yy, cx, cy, rx, ry, edge) -> np.ndarray:
    """1 inside the ellipse, 0 outside, with a smooth edge of relative width `edge`."""
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return np.clip((1.0 + edge - d) / (2 * edge), 0.0, 1.0)


def _vessels(rng: np.random.Generator, size: int, cx: float, cy: float, rd: float, side: float) -> np.ndarray:
    """Vessel layer in [0, 1]: four arcades and some branches leaving the disc."""
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    scale = size / 2.0
    to_px = lambda x, y: ((x + 1.0) * scale, (y + 1.0) * scale)  # noqa: E731
    # temporal arcades bend towards the macula (opposite side of the disc), nasal ones away from it
    angles = []
    for base, sgn in ((-math.pi / 2, 1), (math.pi / 2, -1)):
        angles.append((base - side * 0.45 + rng.normal(0, 0.12), sgn * side * 0.055))  # temporal
        angles.append((base + side * 0.5 + rng.normal(0, 0.15), -sgn * side * 0.02))  # nasal
    for _ in range(rng.integers(1, 3)):
        angles.append((rng.uniform(-math.pi, math.pi), rng.normal(0, 0.03)))
    for theta, bend in angles:
        x, y = cx + 0.3 * rd * math.cos(theta), cy + 0.3 * rd * math.sin(theta)
        width = max(1.0, size / 64 * rng.uniform(1.0, 1.6))
        pts = [to_px(x, y)]
        step = 0.06
        for i in range(int(rng.integers(16, 26))):
            theta += bend + rng.normal(0, 0.07)
            x, y = x + step * math.cos(theta), y + step * math.sin(theta)
            pts.append(to_px(x, y))
            if i in (5, 11) and rng.random() < 0.7:  # a side branch
                bt, bx, by = theta + rng.choice([-1, 1]) * rng.uniform(0.5, 0.9), x, y
                bpts = [to_px(bx, by)]
                for _ in range(int(rng.integers(4, 9))):
                    bt += rng.normal(0, 0.1)
                    bx, by = bx + step * math.cos(bt), by + step * math.sin(bt)
                    bpts.append(to_px(bx, by))
                draw.line(bpts, fill=170, width=max(1, int(round(width * 0.6))))
        draw.line(pts, fill=255, width=int(round(width)))
    layer = layer.filter(ImageFilter.GaussianBlur(radius=max(0.4, size / 256)))
    return np.asarray(layer, np.float32) / 255.0


def render_sample(rng: np.random.Generator, size: int, map_size: int, glaucoma: bool,
                  marker: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one fundus photo and its expert attention map.

    Args:
        rng: the sample's own generator.
        size: photo side in pixels.
        map_size: attention-map side in pixels.
        glaucoma: draw glaucomatous evidence (large cup, thin rim).
        marker: draw the spurious corner marker.

    Returns:
        (photo uint8 [size, size, 3], map uint8 [map_size, map_size], ground-truth dict in
        normalised coordinates, [-1, 1] across the image).
    """
    lin = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    xx, yy = np.meshgrid(lin, lin)

    # fundus circle and retina background
    fx, fy = rng.normal(0, 0.02, 2)
    fr = rng.uniform(0.88, 0.96)
    fundus = _soft_disc(xx, yy, fx, fy, fr, fr, 0.015)
    r2 = ((xx - fx) ** 2 + (yy - fy) ** 2) / fr**2
    base = np.array([0.78, 0.33, 0.13]) * rng.uniform(0.85, 1.1, 3)
    illum = 1.0 - rng.uniform(0.25, 0.6) * r2 + 0.18 * _lowfreq(rng, size, 5)
    texture = 0.05 * _lowfreq(rng, size, max(8, size // 6))
    img = base[None, None, :] * (illum + texture)[..., None]

    # optic disc (nasal side: left or right eye) and macula (temporal side)
    side = rng.choice([-1.0, 1.0])
    cx, cy = side * rng.uniform(0.32, 0.48), rng.uniform(-0.12, 0.12)
    rd = rng.uniform(0.14, 0.19)
    ry = rd * rng.uniform(1.0, 1.12)
    mx, my = cx - side * rng.uniform(0.6, 0.75), cy + rng.normal(0, 0.05)
    macula = _blob(xx, yy, mx, my, 0.16, 0.16)
    img *= (1.0 - 0.35 * macula)[..., None]

    vessels = _vessels(rng, size, cx, cy, rd, side)
    img *= (1.0 - vessels[..., None] * np.array([0.35, 0.55, 0.6]))

    disc = _soft_disc(xx, yy, cx, cy, rd, ry, 0.12)
    disc_col = np.array([0.98, 0.74, 0.42]) * rng.uniform(0.92, 1.05)
    img = img * (1 - disc[..., None]) + disc_col * disc[..., None] * (1 - 0.3 * vessels[..., None])

    # the class evidence: cup-to-disc ratio, and for glaucoma a cup pushed towards one pole (thin rim)
    cdr = rng.uniform(0.58, 0.82) if glaucoma else rng.uniform(0.22, 0.48)
    shift = (1 - cdr) * rng.uniform(0.35, 0.7) if glaucoma else (1 - cdr) * rng.uniform(0.0, 0.15)
    pole = rng.choice([-1.0, 1.0])
    ccx, ccy = cx + rng.normal(0, 0.01), cy + pole * shift * ry
    cup = _soft_disc(xx, yy, ccx, ccy, cdr * rd, cdr * ry, 0.18)
    cup_col = np.array([1.0, 0.95, 0.82])
    img = img * (1 - cup[..., None]) + cup_col * cup[..., None]

    # distractors: bright exudate-like spots, a dark haemorrhage, colour cast
    for _ in range(rng.poisson(1.5)):
        a = rng.uniform(0, 2 * math.pi)
        rr = fr * math.sqrt(rng.uniform(0.05, 0.7))
        s = rng.uniform(0.015, 0.04)
        spot = _blob(xx, yy, fx + rr * math.cos(a), fy + rr * math.sin(a), s, s)
        img = img + spot[..., None] * np.array([0.5, 0.45, 0.15]) * rng.uniform(0.4, 0.9)
    if rng.random() < 0.3:
        a, rr, s = rng.uniform(0, 2 * math.pi), fr * rng.uniform(0.2, 0.75), rng.uniform(0.02, 0.05)
        img *= (1 - 0.5 * _blob(xx, yy, fx + rr * math.cos(a), fy + rr * math.sin(a), s, s))[..., None]

    img = img * fundus[..., None] + 0.015 * (1 - fundus[..., None])
    if rng.random() < 0.5:  # vignetting of the camera
        img *= (1 - rng.uniform(0.1, 0.35) * (xx**2 + yy**2) / 2)[..., None]
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 0.02, 3)
    img = np.clip(img, 0, 1) ** rng.uniform(0.85, 1.15)

    if marker:
        corner = rng.integers(0, 4)
        s = max(2, round(size * MARKER_SIDE))
        inset = round(size * MARKER_INSET)
        x0 = inset if corner % 2 == 0 else size - inset - s
        y0 = inset if corner < 2 else size - inset - s
        img[y0:y0 + s, x0:x0 + s] = np.array([0.9, 0.9, 0.9])

    img = img + rng.normal(0, 0.012, img.shape)
    photo = Image.fromarray(np.uint8(np.clip(img, 0, 1) * 255 + 0.5), "RGB")
    if rng.random() < 0.3:
        photo = photo.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.0) * size / 128))

    # expert fixation map: a soft blob over the disc (towards the thin rim for glaucoma), satellites
    mlin = (np.arange(map_size, dtype=np.float32) + 0.5) / map_size * 2.0 - 1.0
    mxx, myy = np.meshgrid(mlin, mlin)
    bx = cx + rng.normal(0, 0.12 * rd)
    by = cy + rng.normal(0, 0.12 * rd) + (0.35 * pole * shift * ry if glaucoma else 0.0)
    sig = rd * rng.uniform(0.8, 1.3)
    att = _blob(mxx, myy, bx, by, sig, sig * rng.uniform(0.9, 1.2))
    for _ in range(rng.integers(2, 5)):
        a, d = rng.uniform(0, 2 * math.pi), rd * rng.uniform(0.6, 1.8)
        s = rd * rng.uniform(0.3, 0.6)
        att += rng.uniform(0.2, 0.6) * _blob(mxx, myy, cx + d * math.cos(a), cy + d * math.sin(a), s, s)
    if rng.random() < 0.3:  # a glance somewhere else on the retina
        a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 0.7)
        att += rng.uniform(0.1, 0.35) * _blob(mxx, myy, fx + d * math.cos(a), fy + d * math.sin(a), 0.07, 0.07)
    att *= 1 + 0.25 * _lowfreq(rng, map_size, 6)
    att = np.clip(att / att.max() + rng.normal(0, 0.02, att.shape), 0, 1)
    att_img = Image.fromarray(np.uint8(att * 255 + 0.5), "L")

    truth = dict(disc_x=float(cx), disc_y=float(cy), disc_r=float(rd), cup_to_disc=float(cdr),
                 rim_pole=float(pole), marker=bool(marker))
    return np.asarray(photo), np.asarray(att_img), truth


def synthesize(out: str | os.PathLike, spec: SynthSpec, *, force: bool = False,
               progress: bool = False) -> Path:
    """Write `spec.n` photos and attention maps to `out` in the LAG layout.

    The files appear atomically: they are written to a temporary sibling folder that is renamed
    into place at the end, so an interrupted run leaves no half-written data set.

    Args:
        out: target folder; must not exist (or be empty) unless `force`.
        spec: what to draw.
        force: replace an existing folder.
        progress: show a progress bar.

    Returns:
        The path of the written data set. Besides the LAG layout it holds `synth.json` (the spec)
        and `ground_truth.csv` (per image: true class, the class it is filed under, disc position
        and radius, cup-to-disc ratio, marker).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out}: folder exists and is not empty; pass force=True (CLI: --force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for cls in CLASSES:
            (tmp / cls / IMAGE_DIR).mkdir(parents=True)
            (tmp / cls / MAP_DIR).mkdir(parents=True)
        digits = max(4, len(str(spec.n)))
        rows = []
        indices = range(spec.n)
        if progress:
            from tqdm import tqdm
            indices = tqdm(indices, desc="synth", unit="img")
        for i in indices:
            rng = np.random.default_rng([spec.seed, i])
            glaucoma = bool(rng.random() < spec.glaucoma_fraction)
            noisy = bool(rng.random() < spec.label_noise)
            marker = False  # drawn after `noisy`, so a set without the cue draws what it always drew
            if spec.spurious is not None:
                marker = bool(rng.random() < (spec.spurious if glaucoma ^ noisy else 1.0 - spec.spurious))
            photo, att, truth = render_sample(rng, spec.size, spec.resolved_map_size, glaucoma, marker)
            filed = CLASSES[int(glaucoma) ^ int(noisy)]
            name = f"{i + 1:0{digits}d}.jpg"
            Image.fromarray(photo, "RGB").save(tmp / filed / IMAGE_DIR / name, quality=spec.quality)
            Image.fromarray(att, "L").save(tmp / filed / MAP_DIR / name, quality=spec.quality)
            rows.append(dict(file=name, folder=filed, true_class=CLASSES[int(glaucoma)],
                             label_flipped=noisy, **truth))
        with open(tmp / GROUND_TRUTH, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in row.items()})
        (tmp / SPEC_FILE).write_text(json.dumps(asdict(spec), indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
