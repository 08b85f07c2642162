"""The guide's top-5 confidence chart, as a PNG: one bar per candidate answer, with its percentage.

Drawn with Pillow (already a dependency) rather than a plotting library: five labelled bars need
no more, and it renders in a few milliseconds. Callers run it off the event loop.
"""

from __future__ import annotations

import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

from bots import replies
from vqa_engine import Prediction

WIDTH = 640
ROW = 44  # pixels per answer
MARGIN = 24
LABEL_WIDTH = 170
BAR_COLOUR = (66, 133, 244)
GUESS_COLOUR = (170, 170, 170)  # when the model abstains, its bars are a guess: grey
TEXT_COLOUR = (32, 33, 36)
MUTED = (95, 99, 104)
TRACK = (232, 234, 237)


def render_chart(prediction: Prediction, *, title: str, notice: str | None = None, top: int = 5) -> bytes:
    """A PNG bar chart of the ``top`` candidates, with ``title`` above and ``notice`` below."""
    font = ImageFont.load_default(size=18)
    small = ImageFont.load_default(size=15)
    candidates = prediction.top_k[:top]
    notice_lines = textwrap.wrap(notice, width=70) if notice else []
    height = MARGIN * 2 + 34 + ROW * len(candidates) + (22 * len(notice_lines) + 10 if notice_lines else 0)
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), replies.clip(title, 60), font=font, fill=TEXT_COLOUR)
    colour = GUESS_COLOUR if notice else BAR_COLOUR
    track_width = WIDTH - 2 * MARGIN - LABEL_WIDTH - 70
    y = MARGIN + 40
    for candidate in candidates:
        label = replies.clip(candidate.answer, 18)
        draw.text((MARGIN, y + 8), label, font=font, fill=TEXT_COLOUR)
        x0 = MARGIN + LABEL_WIDTH
        draw.rectangle((x0, y + 6, x0 + track_width, y + 30), fill=TRACK)
        filled = round(max(0.0, min(1.0, candidate.confidence)) * track_width)
        if filled:
            draw.rectangle((x0, y + 6, x0 + filled, y + 30), fill=colour)
        draw.text(
            (x0 + track_width + 10, y + 8), replies.percent(candidate.confidence), font=font, fill=MUTED
        )
        y += ROW
    y += 10
    for line in notice_lines:
        draw.text((MARGIN, y), line, font=small, fill=MUTED)
        y += 22
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
