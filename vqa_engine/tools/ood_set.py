"""Build the out-of-distribution folder that ``evaluate --ood`` measures the answer checks on.

    python -m vqa_engine.tools.ood_set OUT [--seed 0] [--per-category 80] [--photos benchmarks/ood/photos]

Pictures that are not like easy-VQA's (one shape of one of eight colours on a light plain
background), one sub-folder per kind, generated from a seed so the same command gives the same
files: ``noise``, ``gradient``, ``text``, ``texture``, ``multi_shape`` (2-4 easy-VQA-style shapes
in one picture), ``unseen_colour`` (one easy-VQA-style shape in a colour the dataset never uses),
and ``photo`` (the photographs in ``--photos``, whole and as random crops).

Beside them, ``questions.tsv``: questions easy-VQA's templates never ask (``QUESTION_KINDS``),
one a line as ``kind<TAB>expected answer type<TAB>question``. Nothing here is used to choose a
threshold: thresholds come from held-out training images only.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_PHOTOS = Path("benchmarks/ood/photos")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
QUESTIONS_FILE = "questions.tsv"

#: easy-VQA's eight colours, as its generator draws them
TRAINED_COLOURS = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "teal": (0, 128, 128),
    "brown": (165, 42, 42),
}
#: colours easy-VQA never uses, each at least 100 (RGB distance) from every trained colour
UNSEEN_COLOURS = {
    "orange": (255, 140, 0),
    "purple": (128, 0, 128),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "pink": (255, 105, 180),
    "olive": (128, 128, 0),
    "navy": (0, 0, 128),
    "lime": (160, 255, 160),
}
_WORDS = [
    *("hello", "cat", "dog", "photo", "what", "is", "this", "shape", "colour", "red", "blue", "sale"),
    *("open", "today", "menu", "coffee", "meeting", "notes", "error", "404", "invoice", "total"),
    *("ticket", "welcome", "exit", "push", "pull", "stop", "danger"),
]
_SUPERSAMPLE = 4  # shapes are drawn large and reduced, for easy-VQA's anti-aliased edges

Rng = np.random.Generator


def _light_background(rng: Rng) -> tuple[int, int, int]:
    return (int(rng.integers(225, 256)), int(rng.integers(225, 256)), int(rng.integers(225, 256)))


def _random_colour(rng: Rng) -> tuple[int, int, int]:
    return (int(rng.integers(0, 256)), int(rng.integers(0, 256)), int(rng.integers(0, 256)))


def _canvas_size(rng: Rng) -> tuple[int, int]:
    """Mostly the model's 64×64, sometimes larger; one in twenty a full-HD frame."""
    roll = rng.random()
    if roll < 0.05:
        return (1920, 1080)
    if roll < 0.5:
        return (64, 64)
    return (int(rng.integers(96, 513)), int(rng.integers(96, 513)))


def draw_shapes(
    shapes: list[tuple[str, tuple[int, int, int], tuple[float, float, float, float]]],
    background: tuple[int, int, int],
    size: int = 64,
) -> Image.Image:
    """Shapes (kind, colour, box x0, y0, x1, y1 in pixels) drawn the way easy-VQA draws them."""
    s = _SUPERSAMPLE
    image = Image.new("RGB", (size * s, size * s), background)
    draw = ImageDraw.Draw(image)
    for kind, colour, (x0, y0, x1, y1) in shapes:
        box = (x0 * s, y0 * s, x1 * s, y1 * s)
        if kind == "circle":
            draw.ellipse(box, fill=colour)
        elif kind == "rectangle":
            draw.rectangle(box, fill=colour)
        else:  # an upright triangle
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
    return image.resize((size, size), Image.Resampling.BOX)


def _shape_box(rng: Rng, kind: str, low: int, high: int, size: int = 64) -> tuple[float, float, float, float]:
    if kind == "rectangle":
        w, h = int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))
    else:
        w = h = int(rng.integers(low, high + 1))
    x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
    return (x0, y0, x0 + w, y0 + h)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...], gap: float = 2) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def unseen_colour(rng: Rng) -> Image.Image:
    """One easy-VQA-style shape in a colour the dataset never uses."""
    kind = str(rng.choice(["circle", "rectangle", "triangle"]))
    colour = list(UNSEEN_COLOURS.values())[int(rng.integers(len(UNSEEN_COLOURS)))]
    return draw_shapes([(kind, colour, _shape_box(rng, kind, 10, 40))], _light_background(rng))


def multi_shape(rng: Rng) -> Image.Image:
    """Two to four easy-VQA-style shapes (trained colours), apart from each other."""
    wanted = int(rng.integers(2, 5))
    placed: list[tuple[str, tuple[int, int, int], tuple[float, float, float, float]]] = []
    colours = list(TRAINED_COLOURS.values())
    for _ in range(200):
        if len(placed) == wanted:
            break
        kind = str(rng.choice(["circle", "rectangle", "triangle"]))
        box = _shape_box(rng, kind, 8, 24)
        if any(_overlaps(box, other[2]) for other in placed):
            continue
        placed.append((kind, colours[int(rng.integers(len(colours)))], box))
    return draw_shapes(placed, _light_background(rng))


def noise(rng: Rng) -> Image.Image:
    """Uniform, Gaussian, salt-and-pepper or blocky colour noise."""
    w, h = _canvas_size(rng)
    kind = int(rng.integers(4))
    array: np.ndarray
    if kind == 0:
        array = rng.integers(0, 256, (h, w, 3))
    elif kind == 1:
        array = np.clip(rng.normal(rng.uniform(60, 200), rng.uniform(20, 70), (h, w, 3)), 0, 255)
    elif kind == 2:  # salt and pepper on a grey
        array = np.full((h, w, 1), rng.uniform(60, 200))
        hit = rng.random((h, w, 1)) < rng.uniform(0.05, 0.5)
        array = np.where(hit, np.where(rng.random((h, w, 1)) < 0.5, 0, 255), array) * np.ones((1, 1, 3))
    else:
        cells = int(rng.integers(2, 17))
        small = Image.fromarray(rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8))
        resample = Image.Resampling.NEAREST if rng.random() < 0.5 else Image.Resampling.BILINEAR
        return small.resize((w, h), resample)
    return Image.fromarray(array.astype(np.uint8))


def gradient(rng: Rng) -> Image.Image:
    """Linear or radial gradients between random colours."""
    w, h = _canvas_size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xx, yy = xx / max(w - 1, 1), yy / max(h - 1, 1)
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
    else:
        cx, cy = rng.uniform(0, 1, 2)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    stops = np.array([_random_colour(rng) for _ in range(int(rng.integers(2, 4)))], dtype=np.float64)
    positions = np.linspace(0, 1, len(stops))
    array = np.stack([np.interp(t, positions, stops[:, c]) for c in range(3)], axis=-1)
    return Image.fromarray(array.astype(np.uint8))


def text(rng: Rng) -> Image.Image:
    """A few words, printed, on a plain light or dark background."""
    w, h = (64, 64) if rng.random() < 0.5 else (int(rng.integers(128, 400)), int(rng.integers(64, 300)))
    dark = rng.random() < 0.3
    background = tuple(int(v) for v in rng.integers(0, 60, 3)) if dark else _light_background(rng)
    low, high = (180, 256) if dark else (0, 120)
    ink = tuple(int(v) for v in rng.integers(low, high, 3))
    image = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(10, max(12, h // 3)))
    font = ImageFont.load_default(size=size)
    y = int(rng.integers(0, max(1, h // 4)))
    while y < h:
        line = " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 4))))
        draw.text((int(rng.integers(0, max(1, w // 4))), y), line, fill=ink, font=font)
        y += int(size * rng.uniform(1.1, 1.6))
    return image


def texture(rng: Rng) -> Image.Image:
    """Checkerboards, stripes, dot grids, scattered lines, rings, bricks."""
    w, h = _canvas_size(rng)
    a, b = _random_colour(rng), _random_colour(rng)
    kind = int(rng.integers(6))
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:
        cell = int(rng.integers(2, 17))
        mask = ((xx // cell + yy // cell) % 2).astype(bool)
    elif kind == 1:
        period = rng.uniform(3, 20)
        angle = rng.uniform(0, math.pi)
        mask = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0
    elif kind == 2:
        period = int(rng.integers(5, 17))
        radius = period * rng.uniform(0.2, 0.45)
        mask = np.hypot(xx % period - period / 2, yy % period - period / 2) < radius
    elif kind == 3:
        period = rng.uniform(3, 15)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        mask = (np.hypot(xx - cx, yy - cy) % period) < period / 2
    elif kind == 4:
        row = int(rng.integers(4, 13))
        brick = row * 2
        offset = (yy // row % 2) * (brick // 2)
        mask = ((yy % row) == 0) | (((xx + offset) % brick) == 0)
    else:
        image = Image.new("RGB", (w, h), a)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(10, 60))):
            p = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(2)]
            draw.line(p, fill=_random_colour(rng), width=int(rng.integers(1, 4)))
        return image
    array = np.where(mask[..., None], np.array(a), np.array(b))
    return Image.fromarray(array.astype(np.uint8))


GENERATORS: dict[str, Callable[[Rng], Image.Image]] = {
    "noise": noise,
    "gradient": gradient,
    "text": text,
    "texture": texture,
    "multi_shape": multi_shape,
    "unseen_colour": unseen_colour,
}


def photo_views(photo: Image.Image, rng: Rng, crops: int) -> list[Image.Image]:
    """The photograph itself and ``crops`` random crops (30-80% of each side)."""
    views = [photo]
    w, h = photo.size
    for _ in range(crops):
        cw, ch = int(w * rng.uniform(0.3, 0.8)), int(h * rng.uniform(0.3, 0.8))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        views.append(photo.crop((x0, y0, x0 + cw, y0 + ch)))
    return views


def build(
    out: Path, *, seed: int = 0, per_category: int = 80, photos: Path | None = DEFAULT_PHOTOS
) -> dict[str, int]:
    """Write the folder; returns how many images each kind got (and ``questions``). Same seed,
    same files."""
    counts: dict[str, int] = {}
    for index, (name, generate) in enumerate(GENERATORS.items()):
        rng = np.random.default_rng([seed, index])  # one stream per kind: adding a kind moves no other
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_category):
            generate(rng).save(folder / f"{name}_{i:03d}.png")
        counts[name] = per_category
    if photos is not None and photos.is_dir():
        rng = np.random.default_rng([seed, len(GENERATORS)])
        folder = out / "photo"
        folder.mkdir(parents=True, exist_ok=True)
        crops = max(0, round(per_category / max(1, len(_photo_files(photos)))) - 1)
        n = 0
        for path in _photo_files(photos):
            with Image.open(path) as opened:
                photo = opened.convert("RGB")
            for j, view in enumerate(photo_views(photo, rng, crops)):
                view.save(folder / f"{path.stem}_{j:02d}.png")
                n += 1
        counts["photo"] = n
    counts["questions"] = write_question_set(out / QUESTIONS_FILE, seed)
    return counts


#: the kinds of off-template questions in ``questions.tsv``
QUESTION_KINDS = ("unknown_words", "gibberish", "emoji", "known_words")
_NOUNS = ("cat", "dog", "car", "person", "tree", "house", "bird", "horse", "ball", "flower", "sky", "face")
_ADJECTIVES = ("big", "small", "large", "tiny", "round", "bright", "dark", "shiny", "blurry", "pretty")
_ATTRIBUTES = ("size", "area", "position", "texture", "name", "width", "height", "number")
_UNKNOWN_TEMPLATES = (
    "is there a {noun}?",
    "is it a {noun}?",
    "is there a {noun} in the image?",
    "what {noun} is this?",
    "does the image contain a {noun}?",
    "is the {noun} {colour}?",
    "what color is the {noun}?",
    "how many {noun}s are there?",
    "is the {shape} {adjective}?",
    "what is the {attribute} of the shape?",
    "where is the {shape}?",
    "why is the shape {colour}?",
)
_FIXED_UNKNOWN = (
    "what animal is this?",
    "who is in the picture?",
    "what is happening here?",
    "what time is it?",
    "which shape is bigger?",
    "how many shapes?",
    "is this a photo?",
    "what is the weather like?",
    "can you describe the picture?",
    "what is written here?",
)
#: off-template questions in the vocabulary's own words, with the answer type a person expects
_KNOWN_WORDS = (
    ("yes/no", "is the shape red?"),
    ("yes/no", "is the circle blue?"),
    ("yes/no", "is the shape a circle?"),
    ("yes/no", "is the triangle yellow?"),
    ("yes/no", "is the rectangle gray?"),
    ("yes/no", "is the color of the shape green?"),
    ("yes/no", "is the shape in the image a triangle?"),
    ("yes/no", "is the color teal?"),
    ("yes/no", "is the image black?"),
    ("yes/no", "is the shape not red?"),
    ("yes/no", "does the shape contain red?"),
    ("yes/no", "is the shape of the image a rectangle?"),
    ("yes/no", "is a shape in the image?"),
    ("yes/no", "does the image contain a shape?"),
    ("yes/no", "is there a red circle?"),
    ("yes/no", "is there a blue triangle in the image?"),
    ("yes/no", "does the image contain a green rectangle?"),
    ("yes/no", "is no circle in the image?"),
    ("yes/no", "is the triangle present?"),
    ("yes/no", "is there a shape?"),
    ("colour", "what is the color?"),
    ("colour", "the shape is what color?"),
    ("colour", "color of the shape?"),
    ("colour", "what color?"),
    ("colour", "what is the color of the image?"),
    ("colour", "what color is the image?"),
    ("colour", "the color of the circle is what?"),
    ("colour", "what color is present?"),
    ("colour", "what color does the image contain?"),
    ("colour", "what color is in the image?"),
    ("shape", "what is the shape?"),
    ("shape", "what shape?"),
    ("shape", "shape?"),
    ("shape", "what is the shape in the image?"),
    ("shape", "what is in the image?"),
    ("shape", "what does the image contain?"),
    ("shape", "the shape is a what?"),
    ("shape", "what is the red shape in the image?"),
    ("shape", "what shape is the image?"),
    ("shape", "what shape is not red?"),
)
_EMOJI = ("🤔", "😀", "🐱", "🐶", "🔴", "🔺", "⭐", "❤️", "👍", "🙏", "🌈", "🚀", "📷", "❓")


def question_set(seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, expected answer type or "-", question) for every off-template question."""
    rng = np.random.default_rng([seed, len(GENERATORS) + 1])
    unknown = dict.fromkeys(_FIXED_UNKNOWN)
    for _ in range(1000):
        if len(unknown) >= 100:
            break
        template = _UNKNOWN_TEMPLATES[int(rng.integers(len(_UNKNOWN_TEMPLATES)))]
        fields = {
            "noun": rng.choice(_NOUNS),
            "adjective": rng.choice(_ADJECTIVES),
            "attribute": rng.choice(_ATTRIBUTES),
            "shape": rng.choice(["shape", "circle", "rectangle", "triangle"]),
            "colour": rng.choice(list(TRAINED_COLOURS)),
        }
        unknown.setdefault(template.format(**fields), None)
    rows: list[tuple[str, str, str]] = [("unknown_words", "-", q) for q in unknown]
    letters = "abcdefghijklmnopqrstuvwxyz"
    for _ in range(60):
        words = [
            "".join(rng.choice(list(letters), int(rng.integers(2, 9))))
            for _ in range(int(rng.integers(1, 5)))
        ]
        rows.append(("gibberish", "-", " ".join(words) + str(rng.choice(["", "?", "!", "..."]))))
    for _ in range(30):
        symbols = "".join(str(rng.choice(_EMOJI)) for _ in range(int(rng.integers(1, 5))))
        rows.append(("emoji", "-", symbols + str(rng.choice(["", "?", "!?", " ?"]))))
    rows += [("known_words", kind, q) for kind, q in _KNOWN_WORDS]
    return list(dict.fromkeys(rows))  # each question once


def write_question_set(path: Path, seed: int = 0) -> int:
    rows = question_set(seed)
    path.write_text("".join(f"{k}\t{t}\t{q}\n" for k, t, q in rows), encoding="utf-8")
    return len(rows)


def read_question_set(path: Path) -> list[tuple[str, str, str]]:
    """The rows of a ``questions.tsv`` (kind, expected answer type, question)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            kind, expected, question = line.split("\t", 2)
            rows.append((kind, expected, question))
    return rows


def _photo_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m vqa_engine.tools.ood_set", description=__doc__.splitlines()[0]
    )
    p.add_argument("out", type=Path, help="folder to write (one sub-folder per kind)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-category", type=int, default=80, help="generated images per kind")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="photographs to include")
    a = p.parse_args(argv)
    counts = build(a.out, seed=a.seed, per_category=a.per_category, photos=a.photos)
    questions = counts.pop("questions")
    for name, n in counts.items():
        print(f"{name:>14}: {n}")
    print(f"wrote {sum(counts.values())} images and {questions} questions ({QUESTIONS_FILE}) to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
