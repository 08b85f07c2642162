"""Untrusted bytes and text -> model inputs. Pure functions; every refusal is a ``VQAInputError``.

Images: PNG, JPEG, WebP, GIF (first frame) and BMP. EXIF orientation is applied; transparency is
flattened onto white; palette, grey, CMYK and 16-bit images become 8-bit RGB. The byte cap is
checked before anything is parsed and the pixel cap before anything is decoded, so a tiny file
declaring a huge canvas (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

from vqa_engine.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageShapeError,
    ImageTooLargeError,
    InvalidQuestionError,
    UnsupportedImageError,
)
from vqa_engine.formats import SUPPORTED_FORMATS, SUPPORTED_TEXT
from vqa_engine.options import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS


class ImageSettings(Protocol):
    """How a model wants its images: what ``config.json`` says (ours, or an ONNX package's)."""

    image_size: int
    resize_mode: str
    pad_color: tuple[int, int, int]
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]


MAX_QUESTION_CHARS = 500
#: a picture more elongated than this (longer side / shorter side) leaves no room for a shape once
#: fitted into a model's square input (a 4000×1 strip would become 64×0 pixels) ...
MAX_ASPECT_RATIO = 20.0
#: ... and one whose shorter side is under this many pixels holds too little to see
MIN_IMAGE_SIDE = 8

# Leading bytes of files people send by mistake, so the refusal can name what was sent.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "a PDF"),
    (0, b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"7z\xbc\xaf", "a 7-Zip archive"),
    (0, b"\x1aE\xdf\xa3", "a video (WebM/MKV)"),
    (4, b"ftypheic", "a HEIC photo"),
    (4, b"ftypheix", "a HEIC photo"),
    (4, b"ftypmif1", "a HEIF photo"),
    (4, b"ftypavif", "an AVIF image"),
    (4, b"ftyp", "a video (MP4/MOV)"),
    (0, b"OggS", "an audio file (Ogg)"),
    (0, b"ID3", "an audio file (MP3)"),
    (0, b"RIFF", "a RIFF file (WAV/AVI)"),  # WebP is RIFF too: checked after Pillow fails
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"\x00\x00\x01\x00", "an icon (ICO)"),
    (0, b"8BPS", "a Photoshop document"),
)


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every image before it is decoded."""

    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def describe_bytes(self) -> str:
        return _human_bytes(self.max_bytes)

    def describe_pixels(self) -> str:
        return _megapixels(self.max_pixels)


def _megapixels(n: float) -> str:
    return f"{n / 1e6:.3g} megapixels"


# Formats we decode; a file that starts like one of them but fails to open is damaged, not alien.
_OUR_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _looks_like_ours(data: bytes) -> bool:
    return data.startswith(_OUR_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _human_bytes(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def _describe_non_image(data: bytes) -> str | None:
    for offset, magic, what in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return what
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "an SVG drawing"
    if head.startswith((b"<!doctype html", b"<html")):
        return "a web page (HTML)"
    try:  # incremental: a multi-byte character cut at the window's end is fine
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096], final=False)
    except UnicodeDecodeError:
        return None
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f" for ch in text):
        return None  # NULs and control bytes: binary that happens to be valid UTF-8
    return "a text file"


#: ``image.info`` keys Pillow reads an EXIF/XMP orientation from (see ``Image.getexif``)
_ORIENTATION_KEYS = frozenset({"exif", "Raw profile type exif", "xmp", "XML:com.adobe.xmp"})


def decode_image(data: bytes, limits: ImageLimits = ImageLimits(), *, draft_size: int = 0) -> Image.Image:
    """Decode untrusted bytes into an 8-bit RGB image, upright.

    ``draft_size`` lets a JPEG decode at a reduced scale (DCT domain) as long as both sides stay
    at least that large: a phone photo decodes several times faster.

    Raises ``EmptyImageError``, ``ImageTooLargeError``, ``UnsupportedImageError`` or
    ``CorruptImageError``.
    """
    if not data:
        raise EmptyImageError("the image is empty (0 bytes); please send it again")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"image larger than {limits.describe_bytes()} ({_human_bytes(len(data))}); "
            "please send a smaller one"
        )
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            # Pillow refuses canvases past its own hard limit before we can read the size
            found = _BOMB_PIXELS.search(str(exc))
            size = f"{_megapixels(int(found.group(1)))}" if found else "too many pixels"
            raise ImageTooLargeError(f"image has {size}; the limit is {limits.describe_pixels()}") from exc
        if _looks_like_ours(data):
            raise CorruptImageError("the image file is damaged or incomplete; please send it again") from exc
        what = _describe_non_image(data)
        if what is None:
            raise UnsupportedImageError(
                f"that file is not an image I can read; please send a {SUPPORTED_TEXT} image"
            ) from exc
        raise UnsupportedImageError(
            f"that file is {what}, not an image I can read; please send a {SUPPORTED_TEXT} image"
        ) from exc

    # no `with`: closing would invalidate the image we return when no conversion was needed
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImageError("the image has no pixels")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(f"image is {width}×{height} pixels; the limit is {limits.describe_pixels()}")
    check_image_shape(width, height)
    if image.format == "JPEG" and draft_size:
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.seek(0)  # animated GIF/WebP: the first frame
        image.load()
        if not _ORIENTATION_KEYS.isdisjoint(image.info):  # only these can carry an orientation
            ImageOps.exif_transpose(image, in_place=True)
        return _to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError("the image file is damaged or incomplete; please send it again") from exc


def check_image_shape(width: int, height: int) -> None:
    """The one rule for pictures too thin or too small to prepare: raises ``ImageShapeError``
    naming the size, so that every front end says the same thing (never a crash on a zero side)."""
    short, long = min(width, height), max(width, height)
    if long > MAX_ASPECT_RATIO * short:
        raise ImageShapeError(
            f"this picture is {width}×{height} pixels: too thin to see a shape; "
            "please send one closer to square"
        )
    if short < MIN_IMAGE_SIDE:
        raise ImageShapeError(
            f"this picture is {width}×{height} pixels: too small to see a shape; "
            f"please send one at least {MIN_IMAGE_SIDE} pixels on each side"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB whatever the mode: alpha composited on white, 16-bit scaled, CMYK converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        array = np.clip(array / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        peak = max(float(array.max(initial=0)), 1.0)
        array = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def image_to_pixels(image: Image.Image, config: ImageSettings) -> torch.Tensor:
    """RGB image -> (3, S, S) uint8, sized as ``config`` says (a quarter of the float size)."""
    size = config.image_size
    if image.size != (size, size):
        if config.resize_mode == "pad":
            image = ImageOps.pad(
                image, (size, size), method=Image.Resampling.BILINEAR, color=config.pad_color
            )
        else:
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    import torch  # here, so that the engine and the chat core import this module without torch

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # (3, S, S)


def normalize(pixels: torch.Tensor, config: ImageSettings) -> torch.Tensor:
    """uint8 pixels (..., 3, S, S) -> the model's normalised float input; one op for a whole batch."""
    import torch

    mean = torch.tensor(config.image_mean, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(config.image_std, device=pixels.device).view(3, 1, 1)
    return (pixels.to(torch.float32) / 255.0 - mean) / std


def image_to_tensor(image: Image.Image, config: ImageSettings) -> torch.Tensor:
    """RGB image -> normalised (3, S, S) float tensor, sized as ``config`` says."""
    return normalize(image_to_pixels(image, config), config)


def load_image_pixels(
    data: bytes, config: ImageSettings, limits: ImageLimits = ImageLimits()
) -> torch.Tensor:
    """Untrusted bytes straight to (3, S, S) uint8 pixels (decoded at reduced scale when possible)."""
    return image_to_pixels(decode_image(data, limits, draft_size=config.image_size), config)


def load_image_tensor(
    data: bytes, config: ImageSettings, limits: ImageLimits = ImageLimits()
) -> torch.Tensor:
    """Untrusted bytes straight to the model's input tensor."""
    return normalize(load_image_pixels(data, config, limits), config)


#: Unicode category Cc (C0, DEL, C1) except tab, newline and carriage return
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_question(text: str, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """The question with whitespace tidied; raises ``InvalidQuestionError`` when it cannot be used."""
    if not isinstance(text, str):
        raise InvalidQuestionError("the question must be text")
    text = unicodedata.normalize("NFC", text)
    control = _CONTROL.search(text)
    if control is not None:
        raise InvalidQuestionError(
            f"the question contains a control character (U+{ord(control.group()):04X}); please type it again"
        )
    text = " ".join(text.split())
    if not text:
        raise InvalidQuestionError("please ask a question about the image, e.g. “what color is the shape?”")
    if len(text) > max_chars:
        raise InvalidQuestionError(
            f"the question is too long ({len(text)} characters; the limit is {max_chars})"
        )
    return text
