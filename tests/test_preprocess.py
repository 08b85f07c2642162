"""Untrusted bytes -> images and tensors, untrusted text -> questions: what a user sees.

Every odd image is built here, in memory, so the cases stay readable next to their assertions.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from vqa_engine.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    InvalidQuestionError,
    UnsupportedImageError,
    VQAInputError,
)
from vqa_engine.modular.model_config import ModelConfig
from vqa_engine.preprocess import (
    ImageLimits,
    clean_question,
    decode_image,
    image_to_tensor,
    load_image_tensor,
)

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
SUGGESTION = "please send a PNG, JPEG, WebP, GIF or BMP image"


# --------------------------------------------------------------------------- helpers


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def solid(color: tuple[int, ...], size: tuple[int, int] = (30, 20), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noise(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """Incompressible pixels, so cutting the file in half really cuts into pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), mode="RGB")


def assert_close(pixel: object, expected: tuple[int, ...], tol: int = 12) -> None:
    """``pixel`` as ``Image.getpixel`` gives it (a tuple for RGB images)."""
    assert isinstance(pixel, tuple) and len(pixel) == len(expected), (pixel, expected)
    assert all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True)), (pixel, expected)


def assert_rgb(image: Image.Image, size: tuple[int, int]) -> None:
    assert image.mode == "RGB"
    assert image.size == size


def refused(exc_type: type[VQAInputError], phrase: str, call: Callable[[], object]) -> str:
    """Run ``call``, expect ``exc_type`` with ``phrase`` in a user-facing message; return the message."""
    with pytest.raises(exc_type, match=re.escape(phrase)) as info:
        call()
    assert isinstance(info.value, VQAInputError)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bilevel_png(width: int, height: int, *, genuine: bool) -> bytes:
    """A 1-bit greyscale PNG declaring ``width``×``height`` pixels.

    ``genuine``: the IDAT really holds every (all-black) row, compressed: a true decompression
    bomb. Otherwise the IDAT is a token stream and only the header lies about the canvas.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    if genuine:
        row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
        compressor = zlib.compressobj(9)
        rows_per_block = 100
        block = row * rows_per_block
        parts = [compressor.compress(block) for _ in range(height // rows_per_block)]
        parts.append(compressor.compress(row * (height % rows_per_block)))
        parts.append(compressor.flush())
        idat = b"".join(parts)
    else:
        idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def left_red_right_blue(size: tuple[int, int] = (40, 20)) -> Image.Image:
    image = solid(BLUE, size)
    image.paste(RED, (0, 0, size[0] // 2, size[1]))
    return image


# --------------------------------------------------------------------------- formats that work


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 95}),
        ("WEBP", {"quality": 90}),
        ("GIF", {}),
        ("BMP", {}),
    ],
)
def test_supported_formats_decode_to_rgb(fmt: str, options: dict[str, object]) -> None:
    color = (200, 40, 60)
    image = decode_image(encode(solid(color, (30, 20)), fmt, **options))
    assert_rgb(image, (30, 20))
    assert_close(image.getpixel((15, 10)), color)
    assert_close(image.getpixel((0, 0)), color)


@pytest.mark.parametrize("mode", ["L", "1", "P"])
def test_grey_bilevel_and_palette_png_become_rgb(mode: str) -> None:
    image = solid(WHITE, (12, 8)).convert(mode)
    decoded = decode_image(encode(image, "PNG"))
    assert_rgb(decoded, (12, 8))
    assert decoded.getpixel((3, 3)) == WHITE


def test_cmyk_jpeg_keeps_its_colour() -> None:
    cmyk_red = solid((0, 255, 255, 0), (30, 20), mode="CMYK")
    data = encode(cmyk_red, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"  # the case under test really is CMYK
    decoded = decode_image(data)
    assert_rgb(decoded, (30, 20))
    pixel = decoded.getpixel((15, 10))
    assert isinstance(pixel, tuple)
    red, green, blue = pixel
    assert red > 200
    assert green < 60
    assert blue < 60


@pytest.mark.parametrize(("value", "grey"), [(0, 0), (32768, 128), (65535, 255)])
def test_16bit_grey_png_is_scaled_not_clipped(value: int, grey: int) -> None:
    ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    ramp[8, 8] = value
    source = Image.fromarray(ramp)
    data = encode(source, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    decoded = decode_image(data)
    assert_rgb(decoded, (16, 16))
    assert_close(decoded.getpixel((8, 8)), (grey, grey, grey), tol=1)


def test_16bit_grey_ramp_keeps_its_range() -> None:
    ramp = np.linspace(0, 65535, 32 * 8).reshape(8, 32).astype(np.uint16)
    decoded = np.asarray(decode_image(encode(Image.fromarray(ramp), "PNG")))
    assert decoded.min() == 0
    assert decoded.max() == 255
    assert 100 < decoded.mean() < 155  # a ramp, not a white sheet


# --------------------------------------------------------------------------- transparency


def palette_with_transparent_index(fmt: str) -> bytes:
    """Left half index 0 (black in the palette, but transparent), right half index 1 (red)."""
    image = Image.new("P", (20, 10), 0)
    image.putpalette([*BLACK, *RED] + [0, 0, 0] * 254)
    image.paste(1, (10, 0, 20, 10))
    return encode(image, fmt, transparency=0)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_transparent_palette_index_becomes_white(fmt: str) -> None:
    decoded = decode_image(palette_with_transparent_index(fmt))
    assert_rgb(decoded, (20, 10))
    assert decoded.getpixel((2, 5)) == WHITE
    assert decoded.getpixel((17, 5)) == RED


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("RGBA", (0, 0, 0, 0), WHITE),  # fully transparent black: white, not black
        ("RGBA", (255, 0, 0, 255), RED),
        ("RGBA", (0, 0, 255, 128), (127, 127, 255)),  # half-transparent blue over white
        ("LA", (0, 0), WHITE),
        ("LA", (0, 255), BLACK),
    ],
)
def test_alpha_is_flattened_onto_white(
    mode: str, color: tuple[int, ...], expected: tuple[int, int, int]
) -> None:
    decoded = decode_image(encode(solid(color, (10, 8), mode=mode), "PNG"))
    assert_rgb(decoded, (10, 8))
    assert_close(decoded.getpixel((5, 3)), expected, tol=2)


def test_transparent_webp_becomes_white() -> None:
    image = solid((0, 0, 0, 0), (10, 8), mode="RGBA")
    decoded = decode_image(encode(image, "WEBP", lossless=True))
    assert_rgb(decoded, (10, 8))
    assert decoded.getpixel((5, 3)) == WHITE


# --------------------------------------------------------------------------- orientation, frames


@pytest.mark.parametrize(
    ("orientation", "size", "red_at", "blue_at"),
    [
        (1, (40, 20), (5, 10), (35, 10)),  # as stored: red left
        (3, (40, 20), (35, 10), (5, 10)),  # 180°: red right
        (6, (20, 40), (10, 5), (10, 35)),  # 90° clockwise: red on top
        (8, (20, 40), (10, 35), (10, 5)),  # 90° anticlockwise: red at the bottom
    ],
)
def test_exif_orientation_is_applied(
    orientation: int, size: tuple[int, int], red_at: tuple[int, int], blue_at: tuple[int, int]
) -> None:
    decoded = decode_image(with_orientation(left_red_right_blue((40, 20)), orientation))
    assert_rgb(decoded, size)
    assert_close(decoded.getpixel(red_at), RED, tol=20)
    assert_close(decoded.getpixel(blue_at), BLUE, tol=20)


def test_exif_orientation_survives_jpeg_draft() -> None:
    data = with_orientation(left_red_right_blue((800, 400)), 6)
    decoded = decode_image(data, draft_size=64)
    assert decoded.mode == "RGB"
    width, height = decoded.size
    assert height > width >= 64
    assert decoded.size != (400, 800)  # the draft did shrink it
    assert_close(decoded.getpixel((width // 2, height // 8)), RED, tol=20)
    assert_close(decoded.getpixel((width // 2, height * 7 // 8)), BLUE, tol=20)


@pytest.mark.parametrize(("fmt", "options"), [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animation_gives_the_first_frame(fmt: str, options: dict[str, object]) -> None:
    frames = [solid(color, (20, 20)) for color in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    decoded = decode_image(data)
    assert_rgb(decoded, (20, 20))
    assert decoded.getpixel((10, 10)) == RED


# --------------------------------------------------------------------------- JPEG draft


def full_hd_jpeg() -> bytes:
    return encode(solid((90, 140, 200), (1920, 1080)), "JPEG")


def test_jpeg_draft_decodes_smaller_but_not_below_the_target() -> None:
    decoded = decode_image(full_hd_jpeg(), draft_size=64)
    assert decoded.mode == "RGB"
    width, height = decoded.size
    assert width < 1920
    assert height < 1080
    assert min(width, height) >= 64
    assert width * 1080 == height * 1920  # aspect ratio kept
    assert_close(decoded.getpixel((width // 2, height // 2)), (90, 140, 200), tol=6)


def test_jpeg_without_draft_is_full_size() -> None:
    assert_rgb(decode_image(full_hd_jpeg()), (1920, 1080))


def test_draft_size_does_not_shrink_a_png() -> None:
    assert_rgb(decode_image(encode(solid(RED, (256, 128)), "PNG"), draft_size=64), (256, 128))


# --------------------------------------------------------------------------- damaged and empty


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {"quality": 95}), ("GIF", {}), ("BMP", {})],
)
def test_truncated_image_is_corrupt(fmt: str, options: dict[str, object]) -> None:
    data = encode(noise(), fmt, **options)
    message = refused(
        CorruptImageError, "damaged or incomplete", lambda: decode_image(data[: len(data) // 2])
    )
    assert "send it again" in message


def test_empty_bytes() -> None:
    message = refused(EmptyImageError, "empty", lambda: decode_image(b""))
    assert "0 bytes" in message


# --------------------------------------------------------------------------- size caps


def forbid_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)


def test_bomb_is_refused_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bilevel_png(9000, 9000, genuine=True)  # 81 megapixels, a few kilobytes
    assert len(data) < 100_000
    assert Image.open(io.BytesIO(data)).size == (9000, 9000)  # a well-formed header
    forbid_pixel_decoding(monkeypatch)
    message = refused(ImageTooLargeError, "megapixels", lambda: decode_image(data))
    assert "9000×9000" in message
    assert "40 megapixels" in message


def test_header_declaring_a_huge_canvas_is_refused_undecoded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bilevel_png(20000, 20000, genuine=False)  # 400 megapixels declared in ~100 bytes
    assert len(data) < 200
    forbid_pixel_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode_image(data)


def test_huge_canvas_message_names_the_limit() -> None:
    refused(ImageTooLargeError, "megapixels", lambda: decode_image(bilevel_png(20000, 20000, genuine=False)))


def test_custom_pixel_limit() -> None:
    limits = ImageLimits(max_pixels=100)
    message = refused(
        ImageTooLargeError, "megapixels", lambda: decode_image(encode(solid(RED, (20, 20)), "PNG"), limits)
    )
    assert "20×20" in message
    assert_rgb(decode_image(encode(solid(RED, (10, 10)), "PNG"), limits), (10, 10))  # exactly at the cap


def test_byte_limit_is_checked_before_parsing() -> None:
    data = encode(noise((40, 40)), "PNG")
    assert len(data) > 2048
    limits = ImageLimits(max_bytes=2048)
    message = refused(ImageTooLargeError, "larger than", lambda: decode_image(data, limits))
    assert "2 KB" in message
    # not even a look at the content: junk over the cap is "too large", not "not an image"
    refused(ImageTooLargeError, "larger than", lambda: decode_image(b"\x00" * 4096, limits))
    # exactly at the cap is fine
    assert_rgb(decode_image(data, ImageLimits(max_bytes=len(data))), (40, 40))


def test_default_byte_limit_is_20_mb() -> None:
    message = refused(
        ImageTooLargeError, "larger than 20 MB", lambda: decode_image(b"\xff" * (20 * 2**20 + 1))
    )
    assert "smaller one" in message


# --------------------------------------------------------------------------- not images


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.txt", "not a photo")
    return buf.getvalue()


RANDOM_BYTES = np.random.default_rng(1234).bytes(4096)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'


def test_random_bytes_are_really_binary() -> None:
    with pytest.raises(UnicodeDecodeError):
        RANDOM_BYTES.decode("utf-8")


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (PDF, "that file is a PDF, not an image"),
        (zip_bytes(), "that file is a ZIP archive"),
        (MP4, "that file is a video (MP4/MOV)"),
        (HEIC, "that file is a HEIC photo"),
        (zlib.compress(b"x" * 100, wbits=31), "that file is a gzip archive"),
        (b"what colour is the shape?\nit is red\n", "that file is a text file"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "that file is a web page (HTML)"),
        (SVG, "that file is an SVG drawing"),
        (encode(solid(RED, (8, 8)), "TIFF"), "that file is a TIFF image"),
        (encode(solid(RED, (16, 16)), "ICO"), "that file is an icon (ICO)"),
        (RANDOM_BYTES, "that file is not an image I can read"),
    ],
    ids=["pdf", "zip", "mp4", "heic", "gzip", "text", "html", "svg", "tiff", "ico", "random"],
)
def test_non_images_are_named(data: bytes, phrase: str) -> None:
    message = refused(UnsupportedImageError, phrase, lambda: decode_image(data))
    assert SUGGESTION in message


def test_truncated_webp_is_corrupt_not_a_wav() -> None:
    data = encode(noise(), "WEBP", quality=90)
    refused(CorruptImageError, "damaged or incomplete", lambda: decode_image(data[: len(data) // 2]))


def test_zero_filled_file_is_not_called_text() -> None:
    message = refused(UnsupportedImageError, "not an image", lambda: decode_image(b"\x00" * 1024))
    assert "text file" not in message


def test_long_utf8_text_is_called_text() -> None:
    data = ("a" + "é" * 3000).encode("utf-8")  # byte 4096 splits an "é"
    refused(UnsupportedImageError, "a text file", lambda: decode_image(data))


# --------------------------------------------------------------------------- image -> tensor


CONFIG = ModelConfig()


def as_rgb_tensor(color: tuple[int, int, int]) -> torch.Tensor:
    return (torch.tensor(color, dtype=torch.float32) / 255.0 - 0.5) / 0.5


def test_tensor_shape_dtype_and_range() -> None:
    tensor = image_to_tensor(noise((100, 70)), CONFIG)
    assert tensor.shape == (3, 64, 64)
    assert tensor.dtype == torch.float32
    assert tensor.min() >= -1.0
    assert tensor.max() <= 1.0


def test_tensor_of_an_image_already_the_right_size() -> None:
    tensor = image_to_tensor(solid((255, 0, 128), (64, 64)), CONFIG)
    expected = as_rgb_tensor((255, 0, 128)).view(3, 1, 1).expand(3, 64, 64)
    assert torch.allclose(tensor, expected)


def test_pad_mode_letterboxes_a_wide_image_with_white() -> None:
    tensor = image_to_tensor(solid(RED, (128, 64)), CONFIG)  # -> 64×32, 16 white rows each side
    white = torch.ones(3, 16, 64)
    red = as_rgb_tensor(RED).view(3, 1, 1).expand(3, 32, 64)
    assert torch.allclose(tensor[:, :16, :], white)
    assert torch.allclose(tensor[:, 48:, :], white)
    assert torch.allclose(tensor[:, 16:48, :], red)


def test_pad_mode_pillarboxes_a_tall_image() -> None:
    tensor = image_to_tensor(solid(RED, (64, 128)), CONFIG)
    assert torch.allclose(tensor[:, :, :16], torch.ones(3, 64, 16))
    assert torch.allclose(tensor[:, :, 48:], torch.ones(3, 64, 16))
    assert torch.allclose(tensor[:, :, 16:48], as_rgb_tensor(RED).view(3, 1, 1).expand(3, 64, 32))


def test_pad_colour_comes_from_the_config() -> None:
    tensor = image_to_tensor(solid(RED, (128, 64)), ModelConfig(pad_color=(0, 0, 0)))
    assert torch.allclose(tensor[:, :16, :], -torch.ones(3, 16, 64))


def test_stretch_mode_has_no_padding() -> None:
    tensor = image_to_tensor(solid(RED, (128, 64)), ModelConfig(resize_mode="stretch"))
    assert tensor.shape == (3, 64, 64)
    assert torch.allclose(tensor, as_rgb_tensor(RED).view(3, 1, 1).expand(3, 64, 64))


def test_load_image_tensor_from_bytes() -> None:
    tensor = load_image_tensor(full_hd_jpeg(), CONFIG)
    assert tensor.shape == (3, 64, 64)
    assert tensor.dtype == torch.float32
    # 16:9 in a square: white bars top and bottom, the photo's colour in the middle
    assert torch.allclose(tensor[:, 0, :], torch.ones(3, 64))
    assert torch.allclose(tensor[:, 32, 32], as_rgb_tensor((90, 140, 200)), atol=0.05)


def test_load_image_tensor_passes_refusals_through() -> None:
    refused(EmptyImageError, "empty", lambda: load_image_tensor(b"", CONFIG))
    refused(
        ImageTooLargeError,
        "megapixels",
        lambda: load_image_tensor(encode(solid(RED, (20, 20)), "PNG"), CONFIG, ImageLimits(max_pixels=100)),
    )


# --------------------------------------------------------------------------- questions


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("what color is the shape?", "what color is the shape?"),
        ("  what   color\tis the  shape? ", "what color is the shape?"),
        ("what color\nis the shape?\r\n", "what color is the shape?"),
        ("is\u00a0it red?", "is it red?"),  # no-break space is whitespace too
        ("what colour is the cafe\u0301?", "what colour is the caf\u00e9?"),  # NFC
        ("a" + " " * 1000 + "b", "a b"),  # length is counted after tidying
    ],
)
def test_clean_question_tidies_whitespace(raw: str, clean: str) -> None:
    assert clean_question(raw) == clean


@pytest.mark.parametrize("raw", ["", " ", "\n\t\r  "])
def test_clean_question_refuses_nothing(raw: str) -> None:
    refused(InvalidQuestionError, "please ask a question", lambda: clean_question(raw))


def test_clean_question_length_cap() -> None:
    assert clean_question("x" * 500) == "x" * 500
    message = refused(InvalidQuestionError, "too long", lambda: clean_question("x" * 501))
    assert "500" in message
    assert "501" in message


def test_clean_question_custom_cap() -> None:
    assert clean_question("abcde", max_chars=5) == "abcde"
    message = refused(InvalidQuestionError, "too long", lambda: clean_question("abcdef", max_chars=5))
    assert "limit is 5" in message


@pytest.mark.parametrize(("char", "code"), [("\x00", "U+0000"), ("\x1b", "U+001B"), ("\x7f", "U+007F")])
def test_clean_question_refuses_control_characters(char: str, code: str) -> None:
    message = refused(
        InvalidQuestionError, "control character", lambda: clean_question(f"what{char} color is it?")
    )
    assert code in message


@pytest.mark.parametrize("value", [None, b"what color is it?", 42, ["what"]])
def test_clean_question_refuses_non_text(value: object) -> None:
    refused(InvalidQuestionError, "must be text", lambda: clean_question(value))  # type: ignore[arg-type]
