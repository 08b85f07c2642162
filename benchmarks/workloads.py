"""The questions benchmarks ask: easy-VQA's test split as (image bytes, question) pairs."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import easy_vqa
from PIL import Image, PngImagePlugin

from benchmarks.common import Jobs


def easy_vqa_jobs(n: int = 512) -> Jobs:
    """The first ``n`` test questions with their images' PNG bytes (images repeat across questions)."""
    questions, _, ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    return [(Path(paths[ids[i]]).read_bytes(), questions[i]) for i in range(n)]


def unique_jobs(n: int, salt: str = "") -> Jobs:
    """``n`` test questions whose images' bytes all differ (same pixels, a PNG text chunk of their
    own), so that no cache can skip any work; ``salt`` keeps several sets apart."""
    questions, _, ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    jobs = []
    for i in range(n):
        image = Image.open(paths[ids[i % len(ids)]]).convert("RGB")
        info = PngImagePlugin.PngInfo()
        info.add_text("n", f"{salt}-{i}" if salt else str(i))
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=info)
        jobs.append((buf.getvalue(), questions[i % len(questions)]))
    return jobs


def easy_vqa_test_split() -> tuple[list[bytes], list[int], list[str], list[str]]:
    """Image bytes (one per image), and per question: its image's index, text and answer."""
    questions, answers, ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    image_ids = sorted(paths)
    row = {image_id: i for i, image_id in enumerate(image_ids)}
    images = [Path(paths[i]).read_bytes() for i in image_ids]
    return images, [row[i] for i in ids], list(questions), list(answers)


def digest(data: bytes) -> str:
    """A short fingerprint of an image's bytes, to match a question across processes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()
