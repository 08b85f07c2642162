"""One picture, any encoding: the same answer and the same abstain decision from the bundled model,
through the engine as every front end asks it (PNG, RGBA, palette with transparency, CMYK, BMP,
WebP, GIF, EXIF-rotated JPEG; grey and 16-bit grey copies answer the shape alike)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from tests.conftest import BUNDLED_MODEL
from vqa_engine import VQAEngine
from vqa_engine.modular.package import load_package

COLOR_Q = "what color is the shape?"
SHAPE_Q = "what shape is in the image?"
SIZE = 200


def drawn() -> Image.Image:
    """A red triangle on white, as someone draws it with Pillow."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(image).polygon([(40, 160), (160, 160), (100, 50)], fill=(220, 30, 30))
    return image


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def encodings() -> dict[str, bytes]:
    picture = drawn()
    rgba = picture.convert("RGBA")
    palette = picture.quantize(colors=4)
    colours = palette.getpalette() or []
    white = next(i for i, c in enumerate(colours[:12:3]) if c == 255)  # the white entry
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the pixels are stored turned the other way
    return {
        "png": saved(picture, "PNG"),
        "rgba png": saved(rgba, "PNG"),
        "palette png, white transparent": saved(palette, "PNG", transparency=white),
        "cmyk jpeg": saved(picture.convert("CMYK"), "JPEG", quality=92),
        "bmp": saved(picture, "BMP"),
        "webp": saved(picture, "WEBP", lossless=True),
        "gif": saved(picture, "GIF"),
        "jpeg": saved(picture, "JPEG", quality=90),
        "exif-rotated jpeg": saved(picture.rotate(90, expand=True), "JPEG", quality=90, exif=exif),
    }


def grey_encodings() -> dict[str, bytes]:
    grey = drawn().convert("L")
    return {
        "grey png": saved(grey, "PNG"),
        # the same greys at 16 bits a channel: 0-255 scaled to 0-65535
        "16-bit grey png": saved(Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), "PNG"),
    }


async def test_every_encoding_gets_the_same_answers_and_decisions() -> None:
    engine = VQAEngine(lambda: load_package(BUNDLED_MODEL))
    await engine.start()
    try:
        verdicts = {}
        for name, data in encodings().items():
            colour, shape = await engine.answer(data, COLOR_Q), await engine.answer(data, SHAPE_Q)
            verdicts[name] = (colour.answer, colour.abstain, shape.answer, shape.abstain)
        greys = {}
        for name, data in grey_encodings().items():
            shape = await engine.answer(data, SHAPE_Q)
            greys[name] = (shape.answer, shape.abstain)
    finally:
        await engine.close()
    assert set(verdicts.values()) == {("red", False, "triangle", False)}, verdicts
    assert set(greys.values()) == {("triangle", False)}, greys
