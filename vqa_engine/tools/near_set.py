"""Pictures of easy-VQA's task as people draw them, asked in easy-VQA's own words.

    python -m vqa_engine.tools.near_set OUT [--seed 0] [--count 600] [--kinds colour_shade,rotation,...]

easy-VQA's pictures come from one generator (64×64, one upright shape in one of eight exact colours on
a near-white background, anti-aliased); people draw other shades, on white or pastel, rotated or
stretched, with hard edges, on big canvases, as JPEG. Each picture varies easy-VQA's in named ways
(``ALL_KINDS``), so that training can use some and an evaluation hold others out. ``build`` writes
``images/`` and ``questions.tsv``; ``samples`` yields the same pictures in memory. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vqa_engine.tools.ood_set import TRAINED_COLOURS, Rng

RGB = tuple[int, int, int]
Point = tuple[float, float]
QUESTIONS_FILE = "questions.tsv"
SHAPE_NAMES = ("circle", "rectangle", "triangle")
#: the variations; "plain" is easy-VQA's own look (a control), never combined with another
ALL_KINDS = (
    *("plain", "colour_shade", "white_background", "pastel_background", "rotation", "aspect", "size"),
    *("aliased", "large_canvas", "jpeg", "blur", "noise"),
)
#: the kinds training mixes in; the others are held out, so that an evaluation can tell whether
#: the model (and its answer checks) generalise to variations they never saw
TRAINING_KINDS = (
    "plain",
    "colour_shade",
    "white_background",
    "pastel_background",
    "rotation",
    "aspect",
    "size",
    "aliased",
    "jpeg",
)
HELD_OUT_KINDS = tuple(k for k in ALL_KINDS if k not in TRAINING_KINDS)
_EXCLUSIVE = {"white_background": "pastel_background", "pastel_background": "white_background"}
#: what people pick for each of easy-VQA's colour words (easy-VQA's own colour first); a colour
#: belongs to the family of its nearest anchor, and shades are only kept well inside a family
ANCHORS: dict[str, tuple[RGB, ...]] = {
    "red": (TRAINED_COLOURS["red"], (237, 28, 36), (220, 30, 30)),
    "green": (TRAINED_COLOURS["green"], (0, 200, 0), (34, 177, 76), (0, 128, 0)),
    "blue": (TRAINED_COLOURS["blue"], (0, 0, 200), (63, 72, 204), (40, 80, 230)),
    "black": (TRAINED_COLOURS["black"], (30, 30, 30)),
    "gray": (TRAINED_COLOURS["gray"], (100, 100, 100), (155, 155, 155), (180, 180, 180)),
    "teal": (TRAINED_COLOURS["teal"], (0, 150, 136), (0, 140, 120), (0, 110, 110)),
    "brown": (TRAINED_COLOURS["brown"], (139, 69, 19), (150, 75, 0), (160, 82, 45), (120, 70, 40)),
    "yellow": (TRAINED_COLOURS["yellow"], (255, 242, 0), (255, 220, 0), (240, 230, 40)),
}
SHADE_MARGIN = 30.0  # a shade is this much nearer its own family's anchors than any other's
MIN_CONTRAST = 120.0  # RGB distance between shape and background ...
MIN_LUMA_CONTRAST = 60.0  # ... and luminance difference for black and gray, which have no hue
_SUPERSAMPLE = 4
#: easy-VQA's question templates (its ``gen_data/questions.py``), the only wording the model knows
_POSITIVE = (
    *("is there a {}?", "is there a {} in the image?"),
    *("does the image contain a {}?", "is a {} present?"),
)
_NEGATIVE = (
    *("is there not a {}?", "is there not a {} in the image?"),
    *("does the image not contain a {}?", "is no {} present?"),
)
_SHAPE_QUESTIONS = tuple(
    f"what shape {v}?" for v in ("is in the image", "is present", "does the image contain")
)
_COLOUR_QUESTIONS = ("what color is the {}?", "what is the color of the {}?")


def family_distances(rgb: Iterable[float]) -> dict[str, float]:
    """Each family's distance to ``rgb`` (its nearest anchor)."""
    rgb = tuple(rgb)
    return {name: min(math.dist(rgb, a) for a in anchors) for name, anchors in ANCHORS.items()}


def colour_family(rgb: Iterable[float]) -> str:
    """The colour word a person would use for ``rgb``: the family of its nearest anchor."""
    distances = family_distances(rgb)
    return min(distances, key=distances.__getitem__)


def is_clear_shade(rgb: RGB, family: str) -> bool:
    """True when nobody would call ``rgb`` anything but ``family``, and it is no near-white."""
    distances = family_distances(rgb)
    own = distances.pop(family)
    return own + SHADE_MARGIN <= min(distances.values()) and math.dist(rgb, (255, 255, 255)) > MIN_CONTRAST


def shade(rng: Rng, family: str) -> RGB:
    """A colour near ``family`` as people pick them: a jittered anchor (neutral for black and gray)."""
    for _ in range(200):
        if family in ("black", "gray"):
            level = rng.uniform(0, 45) if family == "black" else rng.uniform(100, 180)
            values = [level + rng.uniform(-5, 5) for _ in range(3)]
        else:
            anchors = ANCHORS[family]
            values = [v + rng.uniform(-28, 28) for v in anchors[int(rng.integers(len(anchors)))]]
        r, g, b = (int(np.clip(round(v), 0, 255)) for v in values)
        if is_clear_shade((r, g, b), family):
            return (r, g, b)
    return TRAINED_COLOURS[family]


def clear_contrast(rgb: RGB, background: RGB, family: str) -> bool:
    """Whether the shape stands out from its background as clearly as in any drawing program."""
    luma = abs(float(np.dot((0.299, 0.587, 0.114), np.subtract(rgb, background))))
    neutral = family in ("black", "gray")
    return math.dist(rgb, background) > MIN_CONTRAST and (not neutral or luma > MIN_LUMA_CONTRAST)


@dataclass(frozen=True)
class Variation:
    """Everything that decides one picture (``draw`` adds only the noise's random values)."""

    shape: str
    colour: str  # the colour family: the answer
    rgb: RGB
    background: RGB
    canvas: tuple[int, int]  # width, height
    outline: tuple[Point, ...]  # the shape's polygon in canvas pixels (a circle as a 96-gon)
    antialias: bool = True
    blur: float = 0.0  # Gaussian radius in canvas pixels
    noise: float = 0.0  # standard deviation in 0-255 levels
    jpeg_quality: int = 0  # 0: PNG
    kinds: tuple[str, ...] = ("plain",)

    @property
    def centre(self) -> Point:
        """The outline's centroid: inside the shape, whatever its form."""
        points = np.array(self.outline)
        following = np.roll(points, -1, axis=0)
        cross = points[:, 0] * following[:, 1] - following[:, 0] * points[:, 1]
        cx, cy = ((points + following) * cross[:, None]).sum(axis=0) / (3 * cross.sum())
        return float(cx), float(cy)

    def summary(self) -> str:
        """One line for ``questions.tsv``: enough to see what was drawn."""
        box = ",".join(f"{v:.0f}" for v in (*np.min(self.outline, axis=0), *np.max(self.outline, axis=0)))
        rgb, bg = (",".join(map(str, c)) for c in (self.rgb, self.background))
        extras = {"blur": self.blur, "noise": self.noise, "jpeg": self.jpeg_quality}
        text = f"{self.shape} {self.colour} rgb={rgb} bg={bg} canvas={self.canvas[0]}x{self.canvas[1]}"
        text += f" box={box} {'aa' if self.antialias else 'aliased'}"
        return text + "".join(f" {k}={v:g}" for k, v in extras.items() if v)


def _unit_outline(rng: Rng, shape: str, kinds: set[str]) -> np.ndarray:
    """The shape's polygon, centred on 0, before rotation and scaling (easy-VQA's unless varied)."""
    if shape == "rectangle":
        aspect = math.exp(rng.uniform(-math.log(4), math.log(4)))
        w, h = (aspect, 1.0) if "aspect" in kinds else rng.uniform(0.125, 0.5, 2)  # easy-VQA's sides
        return np.array([(-w, -h), (w, -h), (w, h), (-w, h)]) / 2
    if shape == "circle":
        stretch = rng.uniform(1.0, 1.15) if kinds & {"aspect", "rotation"} else 1.0
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        return np.stack([np.cos(t) * stretch, np.sin(t)], axis=1)
    if "aspect" in kinds:  # an irregular triangle, no angle under 25°
        while True:
            p = rng.uniform(0, 1, (3, 2))
            a, b, c = sorted(np.linalg.norm(p - np.roll(p, 1, axis=0), axis=1))  # a faces the least angle
            if (b * b + c * c - a * a) / (2 * b * c) <= math.cos(math.radians(25)):
                return p - p.mean(axis=0)
    return np.array([(-0.5, 0.29), (0.5, 0.29), (0.0, -0.577)])  # upright equilateral, as easy-VQA's


def _place(rng: Rng, shape: str, kinds: set[str], canvas: tuple[int, int]) -> tuple[Point, ...]:
    """Rotate, scale (span 12.5-50% of the shorter side, 15-80% for ``size``) and place inside."""
    short = min(canvas)
    low, high = (0.15, 0.8) if "size" in kinds else (0.125, 0.5)
    for _ in range(100):
        points = _unit_outline(rng, shape, kinds)
        if "rotation" in kinds:
            a = rng.uniform(0, 2 * math.pi)
            points = points @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        span = float(np.ptp(points, axis=0).max())
        if shape == "rectangle" and not kinds & {"aspect", "size"}:
            points = points * short * min(1.0, high / span)  # easy-VQA's sides, each 12.5-50%
        else:
            points = points * rng.uniform(low, high) * short / span
        following = np.roll(points, -1, axis=0)
        area = 0.5 * abs(float((points[:, 0] * following[:, 1] - following[:, 0] * points[:, 1]).sum()))
        perimeter = float(np.linalg.norm(following - points, axis=1).sum())
        if 2 * area / perimeter >= max(2.5, 0.035 * short):  # not a sliver
            break
    points = points - (points.min(axis=0) + points.max(axis=0)) / 2  # centred on its box
    box_w, box_h = np.ptp(points, axis=0)
    cx = rng.uniform(box_w / 2 + 1, canvas[0] - box_w / 2 - 1)
    cy = rng.uniform(box_h / 2 + 1, canvas[1] - box_h / 2 - 1)
    return tuple((float(x + cx), float(y + cy)) for x, y in points)


def _canvas(rng: Rng, kinds: set[str]) -> tuple[int, int]:
    if "large_canvas" not in kinds:
        return (64, 64)
    long = round(math.exp(rng.uniform(math.log(96), math.log(1024))))
    if rng.random() < 0.6:
        return (long, long)
    short = max(64, round(long / rng.uniform(1.1, 1.5)))
    return (long, short) if rng.random() < 0.5 else (short, long)


def _background(rng: Rng, kinds: set[str]) -> RGB:
    if "white_background" in kinds:
        return (255, 255, 255)
    if "pastel_background" in kinds:
        r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.4), rng.uniform(0.85, 1.0))
        return (round(r * 255), round(g * 255), round(b * 255))
    return (int(rng.integers(230, 256)), int(rng.integers(230, 256)), int(rng.integers(230, 256)))


def vary(rng: Rng, kinds: Iterable[str]) -> Variation:
    """A random picture's parameters with the given kinds of variation (none: easy-VQA's look)."""
    wanted = set(kinds) - {"plain"}
    shape = SHAPE_NAMES[int(rng.integers(3))]
    family = sorted(ANCHORS)[int(rng.integers(len(ANCHORS)))]
    canvas = _canvas(rng, wanted)
    for _ in range(500):
        rgb = shade(rng, family) if "colour_shade" in wanted else TRAINED_COLOURS[family]
        background = _background(rng, wanted)
        if clear_contrast(rgb, background, family):
            break
    return Variation(
        shape=shape,
        colour=family,
        rgb=rgb,
        background=background,
        canvas=canvas,
        outline=_place(rng, shape, wanted, canvas),
        antialias="aliased" not in wanted,
        blur=round(rng.uniform(0.3, 1.2) * min(canvas) / 64, 3) if "blur" in wanted else 0.0,
        noise=round(rng.uniform(2, 6), 2) if "noise" in wanted else 0.0,
        jpeg_quality=int(rng.integers(70, 96)) if "jpeg" in wanted else 0,
        kinds=tuple(k for k in ALL_KINDS if k in wanted) or ("plain",),
    )


def draw(rng: Rng, params: Variation) -> Image.Image:
    """The picture (RGB) before encoding: the shape's coverage drawn at 4× (1× when aliased),
    reduced, and blended onto the background; then blur, then noise (from ``rng``)."""
    image = Image.new("RGB", params.canvas, params.background)
    x0, y0 = (max(math.floor(v) - 1, 0) for v in np.min(params.outline, axis=0))
    x1, y1 = np.minimum(np.ceil(np.max(params.outline, axis=0)).astype(int) + 1, params.canvas).tolist()
    s = _SUPERSAMPLE if params.antialias else 1
    mask = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    local = [((x - x0) * s, (y - y0) * s) for x, y in params.outline]  # Pillow fills both edges
    ImageDraw.Draw(mask).polygon(local, fill=255)
    if s > 1:
        mask = mask.reduce(s)
    image.paste(params.rgb, (x0, y0, x1, y1), mask)
    if params.blur:
        image = image.filter(ImageFilter.GaussianBlur(params.blur))
    if params.noise:
        noise = rng.standard_normal((*image.size[::-1], 3), dtype=np.float32) * np.float32(params.noise)
        array = np.asarray(image, dtype=np.float32) + noise
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))
    return image


#: the kinds a scene of several shapes varies in (each shape its own rotation, stretch and shade)
_SCENE_KINDS = ("rotation", "aspect", "colour_shade", "aliased")


def several(rng: Rng) -> Image.Image:
    """Two or three shapes as people draw them, apart on one canvas: a scene that no answer about
    *the* shape fits (for training the model to be unsure of it; never in a question set)."""
    kinds = [k for k in _SCENE_KINDS if rng.random() < 0.5]
    if rng.random() < 0.5:
        kinds.append("white_background" if rng.random() < 0.5 else "pastel_background")
    first = vary(rng, kinds)
    image = draw(rng, first)
    boxes = [_box(first.outline, 0.0)]
    wanted = int(rng.integers(2, 4))
    for _ in range(100):
        if len(boxes) == wanted:
            break
        other = vary(rng, kinds)
        centre = np.array(other.centre)
        outline = tuple(map(tuple, (np.array(other.outline) - centre) * 0.6 + centre))
        box = _box(outline, 2.0)
        if not all(_apart(box, b) for b in boxes):
            continue
        shape = replace(other, outline=outline, background=first.background, canvas=first.canvas)  # type: ignore[arg-type]
        drawn = draw(rng, shape)
        x0, y0, x1, y1 = (int(v) for v in _box(outline, 1.0))
        image.paste(drawn.crop((x0, y0, x1, y1)), (x0, y0))
        boxes.append(box)
    return image


def _box(outline: Iterable[Point], margin: float) -> tuple[float, float, float, float]:
    points = np.array(list(outline))
    (x0, y0), (x1, y1) = points.min(axis=0) - margin, points.max(axis=0) + margin
    return max(0.0, float(x0)), max(0.0, float(y0)), float(x1), float(y1)


def _apart(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def encode(image: Image.Image, params: Variation) -> bytes:
    """The file's bytes: JPEG at the chosen quality, else PNG."""
    buffer = io.BytesIO()
    options = {"format": "JPEG", "quality": params.jpeg_quality} if params.jpeg_quality else {"format": "PNG"}
    image.save(buffer, **options)
    return buffer.getvalue()


def ask(rng: Rng, params: Variation, index: int) -> list[tuple[str, str]]:
    """2-4 of easy-VQA's questions with their answers: at most one about the shape, one about
    the colour, two yes/no (their answers alternate with ``index``, so a set is balanced)."""
    kinds = list(rng.permutation(["shape", "colour", "yes/no", "yes/no"]))[: int(rng.integers(2, 5))]
    shape, colour = params.shape, params.colour
    asked: list[tuple[str, str]] = []
    yes = index % 2 == 0
    for k in kinds:
        if k == "shape":
            options = [*_SHAPE_QUESTIONS, f"what is the {colour} shape?"]
            asked.append((options[int(rng.integers(len(options)))], shape))
        elif k == "colour":
            template = _COLOUR_QUESTIONS[int(rng.integers(2))]
            asked.append((template.format(shape if rng.random() < 0.5 else "shape"), colour))
        else:
            negative = rng.random() < 0.5
            about_shape = rng.random() < 0.5
            truth, others = (shape, SHAPE_NAMES) if about_shape else (colour, tuple(sorted(ANCHORS)))
            subject = truth if yes != negative else str(rng.choice([o for o in others if o != truth]))
            subject = subject if about_shape else f"{subject} shape"
            templates = _NEGATIVE if negative else _POSITIVE
            asked.append((templates[int(rng.integers(4))].format(subject), "yes" if yes else "no"))
            yes = not yes
    return asked


@dataclass(frozen=True)
class Picture:
    params: Variation
    drawn: Image.Image  # before encoding
    image: Image.Image  # as a reader of the file sees it (JPEG artefacts included)
    questions: list[tuple[str, str]]


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(kinds))
    unknown = [k for k in chosen if k not in ALL_KINDS]
    if unknown or not chosen:
        raise ValueError(f"unknown kinds {unknown or '(none given)'}; known: {', '.join(ALL_KINDS)}")
    return chosen


def _pick_kinds(rng: Rng, kinds: tuple[str, ...], index: int) -> list[str]:
    """Picture ``index``'s kinds: one in turn (so each kind gets its share), half the time joined
    by one or two others of ``kinds`` (never two backgrounds, never with ``plain``)."""
    picked = [kinds[index % len(kinds)]]
    extra = int(rng.integers(1, 3)) if rng.random() < 0.5 and picked != ["plain"] else 0
    for k in map(str, rng.permutation(kinds)):
        if k not in (*picked, "plain") and _EXCLUSIVE.get(k) not in picked and len(picked) <= extra:
            picked.append(k)
    return picked


def pictures(seed: int, count: int, kinds: Iterable[str] = ALL_KINDS) -> Iterator[Picture]:
    """The set's pictures in order; picture ``i`` depends only on ``seed`` and ``i``."""
    chosen = _check_kinds(kinds)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        params = vary(rng, _pick_kinds(rng, chosen, i))
        image = drawn = draw(rng, params)
        if params.jpeg_quality:
            with Image.open(io.BytesIO(encode(drawn, params))) as decoded:
                image = decoded.convert("RGB")
        yield Picture(params, drawn, image, ask(rng, params, i))


def samples(
    seed: int, count: int, kinds: Iterable[str] = ALL_KINDS
) -> Iterator[tuple[Image.Image, list[tuple[str, str]]]]:
    """(RGB picture, [(question, answer)]) pairs for training, the same as ``build`` writes."""
    for picture in pictures(seed, count, kinds):
        yield picture.image, picture.questions


@dataclass(frozen=True)
class Row:
    file: Path
    question: str
    answer: str
    kinds: tuple[str, ...]
    params: str


def build(folder: Path, *, seed: int = 0, count: int = 600, kinds: Iterable[str] = ALL_KINDS) -> Counter[str]:
    """Write the pictures and ``questions.tsv``; returns how many pictures have each kind."""
    if count < 0:
        raise ValueError(f"count must be at least 0, not {count}")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    lines = ["file\tquestion\tanswer\tkinds\tparams\n"]
    for i, picture in enumerate(pictures(seed, count, kinds)):
        name = f"images/{i:05d}{'.jpg' if picture.params.jpeg_quality else '.png'}"
        (folder / name).write_bytes(encode(picture.drawn, picture.params))  # PNG only when written: slow
        counts.update(picture.params.kinds)
        tags, summary = "+".join(picture.params.kinds), picture.params.summary()
        lines += [f"{name}\t{q}\t{a}\t{tags}\t{summary}\n" for q, a in picture.questions]
    (folder / QUESTIONS_FILE).write_text("".join(lines), encoding="utf-8")
    return counts


def read_set(folder: Path) -> list[Row]:
    """The rows of a built set's ``questions.tsv``, files as paths under ``folder``."""
    lines = (folder / QUESTIONS_FILE).read_text(encoding="utf-8").splitlines()[1:]
    fields = (line.split("\t") for line in lines if line.strip())
    return [Row(folder / f, q, a, tuple(k.split("+")), p) for f, q, a, k, p in fields]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m vqa_engine.tools.near_set", description=__doc__.splitlines()[0]
    )
    p.add_argument("out", type=Path, help="folder to write (images/ and questions.tsv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=600, help="pictures to write")
    p.add_argument("--kinds", default=",".join(ALL_KINDS), help=f"comma-separated: {','.join(ALL_KINDS)}")
    a = p.parse_args(argv)
    if a.count < 0:
        p.error(f"--count must be at least 0, not {a.count}")
    try:
        kinds = _check_kinds(k.strip() for k in a.kinds.split(",") if k.strip())
    except ValueError as e:
        p.error(f"--kinds: {e}")
    counts = build(a.out, seed=a.seed, count=a.count, kinds=kinds)
    print("".join(f"{name:>18}: {counts[name]}\n" for name in ALL_KINDS if counts[name]), end="")
    print(f"wrote {a.count} pictures and {len(read_set(a.out))} questions ({QUESTIONS_FILE}) to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
