"""Make a synthetic data set in the CARLA assignment's exact on-disk format.

    python carla_synth.py data            # the default set
    python carla_synth.py data --count 60 --seed 7

Each scene is a street in perspective: sky, buildings and walls, trees, a road
with lane lines (sometimes curving), sidewalks, terrain, fences or guard rails,
poles carrying signs and traffic lights, parked and driving cars, pedestrians
and street furniture.  Colours, lighting, textures and noise vary per scene, and
many colours are shared between classes (grey roads, walls, poles and cars), so
a model has to use shape and position, not colour alone.

The same seed and count give the same bytes.  Files are 480x640 RGBA PNGs; a
mask holds the class id in its red channel with green and blue zero (alpha is
opaque so that viewers show it).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from carla_data import CLASS_ID, FULL_SIZE, IMAGE_DIR, MASK_DIR

DEFAULT_COUNT = 500
DEFAULT_SEED = 2021
H, W = FULL_SIZE
_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float32)


class Canvas:
    """An image and its mask, painted back to front."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.image = np.zeros((H, W, 3), np.float32)
        self.mask = np.zeros((H, W), np.uint8)

    def paint(self, region: np.ndarray, colour, cls: str, texture: float = 0.0) -> None:
        """Fill ``region`` with ``colour`` (RGB in 0..1) and label it ``cls``."""
        if not region.any():
            return
        colour = np.asarray(colour, np.float32)
        if texture:
            n = int(region.sum())
            colour = colour + self.rng.normal(0.0, texture, (n, 1)).astype(np.float32)
        self.image[region] = colour
        self.mask[region] = CLASS_ID[cls]

    def rect(self, x0, y0, x1, y1) -> np.ndarray:
        return (_XX >= x0) & (_XX < x1) & (_YY >= y0) & (_YY < y1)

    def ellipse(self, cx, cy, rx, ry) -> np.ndarray:
        return ((_XX - cx) / max(rx, 0.5)) ** 2 + ((_YY - cy) / max(ry, 0.5)) ** 2 <= 1.0


def _grey(rng, low=0.25, high=0.7):
    v = rng.uniform(low, high)
    return np.array([v, v, v]) + rng.normal(0, 0.03, 3)


def _hue(rng):
    return rng.uniform(0.05, 0.95, 3)


class Street:
    """Geometry of one scene: horizon, vanishing point and the road's edges."""

    def __init__(self, rng: np.random.Generator):
        self.horizon = rng.uniform(0.33, 0.5) * H
        self.vx = rng.uniform(0.35, 0.65) * W
        self.half_width = rng.uniform(0.35, 0.6) * W  # road half-width at the bottom row
        self.centre = self.vx + rng.uniform(-0.15, 0.15) * W
        self.curve = rng.uniform(-0.25, 0.25) * W if rng.random() < 0.4 else 0.0
        self.walk = rng.uniform(0.15, 0.35)  # sidewalk width relative to the road

    def depth(self, y):
        """0 at the horizon, 1 at the bottom row."""
        return np.clip((y - self.horizon) / (H - self.horizon), 0.0, 1.0)

    def centre_at(self, y):
        t = self.depth(y)
        return self.vx + (self.centre - self.vx) * t + self.curve * (1 - t) ** 2 * t

    def edges_at(self, y, scale=1.0):
        t = self.depth(y)
        c = self.centre_at(y)
        return c - self.half_width * t * scale, c + self.half_width * t * scale


def _sky(c: Canvas, s: Street, light):
    top = np.array([0.25, 0.45, 0.85]) * light if c.rng.random() < 0.7 else _grey(c.rng, 0.5, 0.85)
    low = np.array([0.75, 0.8, 0.9]) * light if c.rng.random() < 0.7 else np.array([0.95, 0.6, 0.35])
    region = _YY < s.horizon + 2
    t = (_YY[region] / max(s.horizon, 1))[:, None]
    c.image[region] = top * (1 - t) + low * t
    c.mask[region] = CLASS_ID["Sky"]


def _skyline(c: Canvas, s: Street):
    """Buildings and walls along the horizon on both sides, with windows."""
    rng = c.rng
    x = -rng.uniform(0, 60)
    while x < W:
        width = rng.uniform(40, 160)
        top = s.horizon - rng.uniform(30, s.horizon * 0.95)
        base = _grey(rng, 0.3, 0.75) if rng.random() < 0.6 else _hue(rng) * 0.7
        body = c.rect(x, top, x + width, s.horizon + 4)
        c.paint(body, base, "Building", texture=0.02)
        # Windows: darker or lit rectangles, still part of the building.  Worked
        # out on the building's own box only; the full frame would be slow.
        y0, y1 = int(max(top, 0)), int(min(s.horizon + 4, H))
        x0, x1 = int(max(x, 0)), int(min(x + width, W))
        if y1 > y0 and x1 > x0:
            rows = ((np.arange(y0, y1) - top) % 22 < 11)[:, None]
            cols = ((np.arange(x0, x1) - x) % 18 < 9)[None, :]
            window = rows & cols & body[y0:y1, x0:x1]
            shade = 0.4 if rng.random() < 0.7 else 1.5
            box = c.image[y0:y1, x0:x1]
            box[window] = np.clip(box[window] * shade, 0, 1)
        if rng.random() < 0.25:
            c.paint(c.rect(x, s.horizon - rng.uniform(10, 30), x + width, s.horizon + 4),
                    _grey(rng), "Wall", texture=0.015)
        x += width + rng.uniform(-10, 30)


def _ground(c: Canvas, s: Street):
    rng = c.rng
    below = _YY >= s.horizon
    c.paint(below, np.array([0.35, 0.5, 0.25]) * rng.uniform(0.6, 1.2), "Terrain", texture=0.04)
    if rng.random() < 0.3:
        c.paint(below & (rng.random() < 0.5) & (_XX < W / 3), [0.45, 0.35, 0.25], "Ground", 0.03)
    left, right = s.edges_at(_YY, 1.0 + 2 * s.walk)
    walk = below & (_XX > left) & (_XX < right)
    c.paint(walk, _grey(rng, 0.45, 0.8) * np.array([1.0, rng.uniform(0.85, 1.0), 1.0]),
            "Sidewalk", texture=0.03)
    # Kerb stones: a thin band where sidewalk meets road, still sidewalk.
    left, right = s.edges_at(_YY)
    road = below & (_XX > left) & (_XX < right)
    c.paint(road, _grey(rng, 0.2, 0.55), "Road", texture=0.035)
    if rng.random() < 0.5:  # a puddle or patch that darkens some road
        patch = road & c.ellipse(rng.uniform(0, W), rng.uniform(s.horizon, H), 60, 15)
        c.image[patch] *= 0.6


def _lane_lines(c: Canvas, s: Street):
    rng = c.rng
    colour = [0.95, 0.95, 0.9] if rng.random() < 0.7 else [0.95, 0.8, 0.2]
    below = _YY >= s.horizon
    t = s.depth(_YY)
    centre = s.centre_at(_YY)
    width = 1.0 + 7.0 * t
    dash = np.sin(np.log(np.maximum(t, 1e-3)) * 9.0 + rng.uniform(0, 6.28)) > -0.2
    offsets = [0.0] if rng.random() < 0.5 else [-0.5, 0.5]
    for off in offsets:
        x = centre + off * s.half_width * t
        c.paint(below & (np.abs(_XX - x) < width) & dash, colour, "RoadLine", texture=0.02)
    for edge in s.edges_at(_YY, 0.95):
        c.paint(below & (np.abs(_XX - edge) < width * 0.7), colour, "RoadLine", texture=0.02)


def _side_x(s: Street, y: float, side: int, where: float) -> float:
    """x of a point at row ``y``, ``where`` along the sidewalk (0 kerb, 1 outer edge)."""
    pick = 1 if side > 0 else 0
    inner = s.edges_at(y)[pick]
    outer = s.edges_at(y, 1.0 + 2 * s.walk)[pick]
    return float(inner + (outer - inner) * where)


def _fence(c: Canvas, s: Street):
    """A fence or guard rail standing just beyond each sidewalk's outer edge (each side half the time)."""
    rng = c.rng
    outer = s.edges_at(_YY, 1.0 + 2 * s.walk)
    t = s.depth(_YY)
    height = 10 + 60 * t
    # Row where the outer sidewalk edge passes each column: the fence's foot.
    base_y = s.horizon + np.abs(_XX - s.vx) / max(s.half_width * (1 + 2 * s.walk), 1) * (H - s.horizon)
    upright = (_YY > base_y - height) & (_YY <= base_y) & (_YY >= s.horizon)
    for side, edge in zip((-1, 1), outer, strict=True):
        if rng.random() < 0.5:
            continue
        cls = "Fence" if rng.random() < 0.7 else "GuardRail"
        region = upright & ((_XX - edge) * side > 0) & (np.abs(_XX - edge) < 120 * t + 2)
        if cls == "Fence":
            region &= (_XX % 3 != 0) | (_YY % 12 < 3)  # slats and rails, with gaps between
        c.paint(region, _grey(rng, 0.2, 0.6), cls, texture=0.03)


def _trees(c: Canvas, s: Street, n: int):
    rng = c.rng
    for _ in range(n):
        y = rng.uniform(s.horizon + 5, H * 0.95)
        t = float(s.depth(y))
        x = _side_x(s, y, rng.choice([-1, 1]), rng.uniform(0.8, 1.6))
        trunk_h, crown = 120 * t + 10, 70 * t + 8
        c.paint(c.rect(x - 3 - 6 * t, y - trunk_h, x + 3 + 6 * t, y), [0.35, 0.25, 0.15], "Vegetation", 0.03)
        leaf = np.array([0.2, 0.5, 0.15]) if rng.random() < 0.8 else np.array([0.7, 0.45, 0.1])
        c.paint(c.ellipse(x, y - trunk_h, crown, crown * rng.uniform(0.8, 1.3)),
                leaf * rng.uniform(0.6, 1.3), "Vegetation", texture=0.07)


def _poles(c: Canvas, s: Street, n: int):
    rng = c.rng
    for _ in range(n):
        y = rng.uniform(s.horizon + 10, H)
        t = float(s.depth(y))
        x = _side_x(s, y, rng.choice([-1, 1]), rng.uniform(0.1, 0.5))
        height, width = 200 * t + 20, 2 + 5 * t
        top = y - height
        c.paint(c.rect(x - width, top, x + width, y), _grey(rng, 0.35, 0.7), "Pole", texture=0.02)
        kind = rng.random()
        size = 8 + 30 * t
        if kind < 0.45:
            colour = [[0.8, 0.1, 0.1], [0.1, 0.3, 0.8], [0.95, 0.85, 0.1], [0.9, 0.9, 0.9]][rng.integers(4)]
            if rng.random() < 0.5:
                shape = c.ellipse(x, top, size, size)
            else:
                shape = c.rect(x - size, top - size, x + size, top + size)
            c.paint(shape, colour, "TrafficSign", texture=0.02)
        elif kind < 0.75:
            box = c.rect(x - size * 0.5, top - size * 1.5, x + size * 0.5, top + size * 1.5)
            c.paint(box, [0.12, 0.12, 0.1], "TrafficLight", texture=0.02)
            lamp = c.ellipse(x, top + size * rng.choice([-1, 0, 1]), size * 0.35, size * 0.35)
            c.paint(lamp, [[0.9, 0.1, 0.1], [0.95, 0.7, 0.1], [0.1, 0.9, 0.3]][rng.integers(3)], "TrafficLight")


def _car(c: Canvas, s: Street, y: float, x: float):
    rng = c.rng
    t = float(s.depth(y))
    w, h = 30 + 260 * t, 22 + 140 * t
    body = _hue(rng) if rng.random() < 0.6 else _grey(rng, 0.1, 0.9)
    c.paint(c.rect(x - w / 2, y - h * 0.6, x + w / 2, y), body, "Vehicle", texture=0.02)
    c.paint(c.rect(x - w * 0.35, y - h, x + w * 0.35, y - h * 0.55), body * 0.9, "Vehicle", texture=0.02)
    c.paint(c.rect(x - w * 0.3, y - h * 0.95, x + w * 0.3, y - h * 0.62), [0.1, 0.12, 0.15], "Vehicle", 0.02)
    for side in (-1, 1):
        c.paint(c.ellipse(x + side * w * 0.33, y, w * 0.1, h * 0.13), [0.03, 0.03, 0.03], "Vehicle")
    # Shadow under the car darkens road but keeps it road.
    shadow = c.rect(x - w / 2, y, x + w / 2, y + 4 + 6 * t) & (c.mask == CLASS_ID["Road"])
    c.image[shadow] *= 0.5


def _pedestrian(c: Canvas, s: Street, y: float, x: float):
    rng = c.rng
    t = float(s.depth(y))
    h = 30 + 170 * t
    w = h * 0.22
    cls = "Pedestrian"
    c.paint(c.rect(x - w * 0.35, y - h * 0.45, x - w * 0.05, y), _hue(rng) * 0.6, cls, 0.02)
    c.paint(c.rect(x + w * 0.05, y - h * 0.45, x + w * 0.35, y), _hue(rng) * 0.6, cls, 0.02)
    c.paint(c.rect(x - w / 2, y - h * 0.85, x + w / 2, y - h * 0.42), _hue(rng), cls, 0.03)
    c.paint(c.ellipse(x, y - h * 0.92, w * 0.3, h * 0.08), [0.8, 0.6, 0.45] * rng.uniform(0.4, 1.1, 3), cls)


def _street_furniture(c: Canvas, s: Street):
    rng = c.rng
    for _ in range(rng.integers(0, 3)):
        y = rng.uniform(s.horizon + 10, H)
        t = float(s.depth(y))
        x = _side_x(s, y, rng.choice([-1, 1]), rng.uniform(0.3, 0.9))
        size = 8 + 60 * t
        cls = ["Static", "Dynamic", "Other"][rng.integers(3)]
        c.paint(c.rect(x - size, y - size * 0.8, x + size, y), _hue(rng) * 0.8, cls, texture=0.03)


def render_scene(seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw scene ``index`` of the set ``seed``: (RGBA image, RGBA mask), uint8."""
    rng = np.random.default_rng([seed, index])
    c = Canvas(rng)
    s = Street(rng)
    light = rng.uniform(0.55, 1.25)
    _sky(c, s, light)
    _skyline(c, s)
    _ground(c, s)
    _lane_lines(c, s)
    _fence(c, s)
    _trees(c, s, int(rng.integers(0, 5)))
    _poles(c, s, int(rng.integers(0, 4)))
    _street_furniture(c, s)
    # Cars and pedestrians far to near, so nearer ones cover farther ones.
    actors = []
    for _ in range(rng.integers(1, 6)):
        y = rng.uniform(s.horizon + 8, H * 1.05)
        lo, hi = s.edges_at(y, 0.8)
        actors.append((y, _car, rng.uniform(lo, hi)))
    for _ in range(rng.integers(0, 4)):
        y = rng.uniform(s.horizon + 8, H)
        actors.append((y, _pedestrian, _side_x(s, y, rng.choice([-1, 1]), rng.uniform(0.2, 0.8))))
    for y, draw, x in sorted(actors, key=lambda a: a[0]):
        draw(c, s, y, x)
    # Global lighting: a tint, a left-right gradient, then sensor noise.
    tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    gradient = 1.0 + rng.uniform(-0.25, 0.25) * (_XX / W - 0.5)[..., None]
    image = c.image * light * tint * gradient + rng.normal(0, 0.02, (H, W, 3)).astype(np.float32)
    rgba = np.full((H, W, 4), 255, np.uint8)
    rgba[..., :3] = np.clip(image * 255, 0, 255).astype(np.uint8)
    mask = np.zeros((H, W, 4), np.uint8)
    mask[..., 0] = c.mask
    mask[..., 3] = 255
    return rgba, mask


def _write(args: tuple[Path, int, int]) -> None:
    import imageio.v3 as iio

    out, seed, index = args
    image, mask = render_scene(seed, index)
    name = f"{index:06d}.png"
    iio.imwrite(out / IMAGE_DIR / name, image, extension=".png", compress_level=1)
    iio.imwrite(out / MASK_DIR / name, mask, extension=".png", compress_level=1)


def generate(out: str | os.PathLike, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED,
             workers: int | None = None, progress: bool = True) -> Path:
    """Write ``count`` image/mask pairs into ``out``/CameraRGB and ``out``/CameraMask.

    The files are written to a temporary folder first and moved in at the end,
    so an interrupted run leaves no half-made set behind.  Refuses to touch an
    ``out`` that already has either folder (it may hold real data).
    """
    import shutil
    import tempfile

    out = Path(out)
    existing = [out / sub for sub in (IMAGE_DIR, MASK_DIR) if (out / sub).exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} already exists; remove it first to make a new synthetic set.")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".synth-") as tmp:
        staging = Path(tmp)
        for sub in (IMAGE_DIR, MASK_DIR):
            (staging / sub).mkdir()
        jobs = [(staging, seed, i) for i in range(count)]
        with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
            done = pool.map(_write, jobs, chunksize=4)
            if progress:
                from tqdm import tqdm

                done = tqdm(done, total=count, desc="synthetic CARLA", unit="pair", file=sys.stdout, disable=None)
            for _ in done:
                pass
        for sub in (IMAGE_DIR, MASK_DIR):
            shutil.move(staging / sub, out / sub)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to create CameraRGB/ and CameraMask/ in")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    generate(args.out, args.count, args.seed, args.workers)


if __name__ == "__main__":
    main()
