"""The image formats the engine reads: one list, torch-free, for the engine and the chat front ends.

Front ends use it to refuse a file before downloading it when the platform already declares a
type we cannot read; the engine's decoder uses the same list, so the two never disagree.
"""

from __future__ import annotations

#: Pillow format names the decoder accepts
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
#: how user-facing messages name them
SUPPORTED_TEXT = "PNG, JPEG, WebP, GIF or BMP"
#: declared MIME types of those formats (a declared ``application/octet-stream`` is read by content)
SUPPORTED_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/webp", "image/gif", "image/bmp"}
)
#: a declared type that says nothing: the bytes decide
UNDECLARED_MIME_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

_MIME_NAMES = {
    "application/pdf": "a PDF",
    "application/zip": "a ZIP archive",
    "application/x-zip-compressed": "a ZIP archive",
    "image/svg+xml": "an SVG drawing",
    "image/heic": "a HEIC photo",
    "image/heif": "a HEIF photo",
    "image/avif": "an AVIF image",
    "image/tiff": "a TIFF image",
    "image/x-icon": "an ICO icon",
    "image/vnd.microsoft.icon": "an ICO icon",
    "image/x-ms-bmp": "a BMP image",
    "application/msword": "a Word document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "a Word document",
}


def is_readable_mime(mime_type: str | None) -> bool:
    """True unless the declared type is one we know we cannot read."""
    mime = (mime_type or "").split(";")[0].strip().lower()
    return mime in SUPPORTED_MIME_TYPES or mime in UNDECLARED_MIME_TYPES


def describe_mime(mime_type: str) -> str | None:
    """``a PDF``, ``a video``... for a declared type that is not an image we read; None for a type
    we have no name for. Never the declared type itself: a client wrote it."""
    mime = mime_type.split(";")[0].strip().lower()
    if mime in _MIME_NAMES:
        return _MIME_NAMES[mime]
    for prefix, name in (
        ("video/", "a video"),
        ("audio/", "an audio file"),
        ("text/", "a text file"),
    ):
        if mime.startswith(prefix):
            return name
    return None
