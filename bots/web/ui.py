"""The web app at ``/``: the guide's Gradio page (image + question → answer, confidence, top-5
chart, examples), asking the chat core through ``WebAsker`` like every other front end.

The image reaches us as Gradio stored the upload, unconverted (``preprocess=False``), so a file
that is not an image gets the chat core's own message instead of a decoder's traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from bots import replies
from bots.events import Button, Reply
from bots.web.asker import Upload, WebAsker, user_of_ip
from bots.web.gradio_guard import RefusedEvent, read_upload, upload_folder

log = logging.getLogger(__name__)

#: the chart's bars, as the guide shows them
CHART_CLASSES = 5
#: (file in the examples folder, question): one click asks
EXAMPLES = (
    ("blue_circle.png", "what shape is in the image?"),
    ("red_triangle.png", "what color is the shape?"),
    ("green_rectangle.png", "is there a circle?"),
    ("yellow_circle.png", "what color is the circle?"),
)
TITLE = "Ask a picture"


#: the page's event: (image, question, the request) → (chart, the reply the user reads)
PageHandler = Callable[[Any, Any, gr.Request], Awaitable[tuple[dict[str, float] | None, str]]]
#: gr.Label shows whole percentages, rounded: anything from 0.995 would read "100%", which a
#: model's probability never means (bots/replies.percent says ">99.9%" for the same reason)
CHART_MAX = 0.994


def chart(reply: Reply) -> dict[str, float] | None:
    """The top candidates for ``gr.Label`` (None clears it: nothing was answered, or the answer
    is a written sentence, which the core offers no chart for)."""
    if not reply.predictions or (reply.buttons and Button.CHART not in reply.buttons):
        return None
    return {c.answer: min(c.confidence, CHART_MAX) for c in reply.predictions[0].top_k}


def upload_of(payload: Any) -> object:
    """The stored upload's path as Gradio's unprocessed image value names it (a FileData dict);
    None when there is no image. Only ever read through ``read_upload``."""
    if isinstance(payload, dict):
        return payload.get("path") or None
    return payload or None


def page_handler(asker: WebAsker, *, uploads: Path, max_image_bytes: int) -> PageHandler:
    """The page's one event, asking ``asker``; images are read only from the ``uploads`` folder."""

    async def ask(image: Any, question: Any, request: gr.Request) -> tuple[dict[str, float] | None, str]:
        """Upload + question → (chart, the reply the user reads)."""
        path = upload_of(image)
        upload: Upload | None = None  # (none, or no question: the chat core's refusal, logged)
        if path is not None:
            if not isinstance(question, str | None):
                log.info("web app: refused a question that is not text (%s)", type(question).__name__)
                return None, replies.WEB_BAD_REQUEST
            try:
                data = await asyncio.to_thread(read_upload, path, uploads, max_image_bytes)
            except RefusedEvent as refused:  # a path, not an upload; gone (Gradio's cache was cleaned)
                log.info("web app: refused an image (%d): %s", refused.status, refused)
                return None, refused.message
            upload = Upload(data, mime_type=None, file_name=Path(str(path)).name)  # the bytes decide
        host = request.client.host if request.client else None
        text = question if isinstance(question, str) else ""
        reply = await asker.ask(user_of_ip(host), upload, text, top_k=CHART_CLASSES)
        return chart(reply), reply.text

    return ask


def build_ui(
    asker: WebAsker,
    *,
    max_image_bytes: int,
    examples_dir: Path | None = None,
    examples: Sequence[tuple[str, str]] = EXAMPLES,
    folder: Path | None = None,
) -> gr.Blocks:
    """The page; mount it with ``gr.mount_gradio_app`` after ``.queue(max_size=...)``. Images are
    read only from Gradio's upload ``folder`` (``GRADIO_TEMP_DIR``)."""
    ask = page_handler(asker, uploads=folder or upload_folder(), max_image_bytes=max_image_bytes)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(f"# {TITLE}\n{replies.WEB_INTRO}")
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath",
                    sources=["upload", "clipboard"],
                    label="Image",
                    height=240,
                    elem_id="image",
                )
                question = gr.Textbox(
                    label="Question", placeholder="what color is the shape?", max_lines=1, elem_id="question"
                )
                button = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column():
                answer = gr.Textbox(label="Answer", interactive=False, lines=4, elem_id="answer")
                top = gr.Label(num_top_classes=CHART_CLASSES, label="Top 5", elem_id="chart")
        inputs, outputs = [image, question], [top, answer]
        button.click(ask, inputs, outputs, api_name="ask", preprocess=False)
        question.submit(ask, inputs, outputs, api_visibility="private", preprocess=False)
        rows = [
            [str(examples_dir / name), q]
            for name, q in examples
            if examples_dir and (examples_dir / name).is_file()
        ]
        if rows:
            gr.Examples(
                rows,
                inputs,
                outputs,
                fn=ask,
                run_on_click=True,
                cache_examples=False,
                preprocess=False,
                api_visibility="private",
                label="Examples (one click asks)",
                elem_id="examples",
            )
    return blocks
