"""Load each case's backend (``load_backend``, as the service does) and answer one question: one
JSON line per case, with what loaded.

    python -m tests.children.load_backends CASES_JSON IMAGE QUESTION

A case is the keyword arguments of ``ModelOptions`` (``{"model_repo_id": ..., "quantize": ...}``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.children.cases import report_each
from vqa_engine.loading.loader import load_backend
from vqa_engine.options import ModelOptions


def load_and_ask(case: dict[str, Any], image: bytes, question: str) -> dict[str, Any]:
    backend = load_backend(ModelOptions(device="cpu", **case))
    prediction = backend.predict(image, question, top_k=3).to_dict()
    return {"info": backend.info.to_dict(), **prediction}


def main() -> None:
    image, question = Path(sys.argv[2]).read_bytes(), sys.argv[3]
    report_each(sys.argv[1], lambda case: load_and_ask(case, image, question))


if __name__ == "__main__":
    main()
