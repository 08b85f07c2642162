"""The bundled model and its checks on pictures from a renderer of its own, not ``near_set``'s code.

    python -m benchmarks.other_renderer [PACKAGE ...]   # default: models/easy-vqa-film

480 pictures drawn the plain way with Pillow's ``ImageDraw`` (``ellipse``, ``rectangle``,
``regular_polygon`` for triangles and tilted squares), the 3 shapes × 8 colours (easy-VQA's own
and a shade people pick), 64, 256 and 512 px on white, upright and tilted, PNG and JPEG (quality
85), seeded; four easy-VQA questions each. Per package: accuracy of every answer, the share
answered (not marked a guess) and the share of those that are wrong. Several packages (e.g. an
older model) are measured side by side in one run. Prints a table; writes
``benchmarks/results/other_renderer.json``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from benchmarks.common import BUNDLED_MODEL, result_path, shown, write_result
from vqa_engine.modular.package import load_package
from vqa_engine.modular.predictor import Predictor
from vqa_engine.preprocess import load_image_tensor

COLOURS = {
    "red": [(255, 0, 0), (200, 20, 30)],
    "green": [(0, 255, 0), (20, 160, 40)],
    "blue": [(0, 0, 255), (30, 60, 220)],
    "black": [(0, 0, 0), (25, 25, 25)],
    "gray": [(128, 128, 128), (150, 150, 150)],
    "teal": [(0, 128, 128), (10, 140, 130)],
    "brown": [(165, 42, 42), (130, 70, 30)],
    "yellow": [(255, 255, 0), (250, 220, 10)],
}


def pictures(seed: int = 42) -> list[tuple[bytes, str, str]]:
    """(encoded picture, shape, colour) for every combination."""
    rng = random.Random(seed)
    rows = []
    combos = itertools.product(
        ["circle", "rectangle", "triangle"], COLOURS.items(), [64, 256, 512], [0, 1], ["PNG", "JPEG"], [0, 1]
    )
    for shape, (name, shades), size, shade, fmt, tilt in combos:
        if shape == "circle" and tilt:
            continue
        image = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(image)
        colour, r = shades[shade], size * rng.uniform(0.2, 0.35)
        cx, cy = size / 2 + rng.uniform(-0.1, 0.1) * size, size / 2 + rng.uniform(-0.1, 0.1) * size
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif shape == "triangle":
            draw.regular_polygon((cx, cy, r), 3, rotation=rng.uniform(0, 120) if tilt else 0, fill=colour)
        elif tilt:
            draw.regular_polygon((cx, cy, r), 4, rotation=rng.uniform(5, 40), fill=colour)
        else:
            draw.rectangle((cx - r, cy - r * 0.6, cx + r, cy + r * 0.6), fill=colour)
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, quality=85)
        rows.append((buffer.getvalue(), shape, name))
    return rows


def measure(package_dir: Path, rows: list[tuple[bytes, str, str]]) -> dict[str, float | str | int]:
    package = load_package(package_dir)
    predictor = Predictor(package)
    n = right = answered = answered_right = 0
    for data, shape, colour in rows:
        other = "triangle" if shape == "circle" else "circle"
        asked = [
            ("what shape is in the image?", shape),
            ("what color is the shape?", colour),
            (f"is there a {shape}?", "yes"),
            (f"is there a {other}?", "no"),
        ]
        image = load_image_tensor(data, package.config)
        predictions = predictor.predict_batch(
            torch.stack([image] * len(asked)), [q for q, _ in asked], top_k=1
        )
        for prediction, (_, truth) in zip(predictions, asked, strict=True):
            n += 1
            right += prediction.answer == truth
            if not prediction.abstain:
                answered += 1
                answered_right += prediction.answer == truth
    return {
        "package": shown(package_dir),
        "pictures": len(rows),
        "questions": n,
        "accuracy": right / n,
        "answered": answered / n,
        "wrong_among_answered": 1 - answered_right / max(1, answered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", type=Path, nargs="*", help="model packages (default: the bundled one)")
    packages = parser.parse_args().packages or [BUNDLED_MODEL]
    torch.set_num_threads(2)
    rows = pictures()
    results = [measure(p, rows) for p in packages]
    print(f"{'package':40} {'accuracy':>9} {'answered':>9} {'wrong of answered':>18}")
    for r in results:
        print(
            f"{str(r['package'])[-40:]:40} {r['accuracy']:>9.1%} {r['answered']:>9.1%} "
            f"{r['wrong_among_answered']:>18.2%}"
        )
    write_result(result_path("other_renderer"), results)


if __name__ == "__main__":
    main()
