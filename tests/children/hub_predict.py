"""Load each case's model as ``main.py`` does and answer one question: one JSON line per case.

    python -m tests.children.hub_predict CASES_JSON IMAGE QUESTION

A case is ``{"repo": ..., "revision": ..., "token": bool}``; with ``token``, the one in
``TEST_HUB_TOKEN``. Several cases in one child pay for starting torch once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tests.children.cases import report_each
from vqa_engine.loading.hub import load_model
from vqa_engine.modular.predictor import Predictor


def predict(case: dict[str, Any], image: bytes, question: str) -> dict[str, Any]:
    token = os.environ["TEST_HUB_TOKEN"] if case.get("token") else None
    package = load_model(case["repo"], revision=case.get("revision"), token=token, device="cpu")
    assert package.source is not None  # a model loaded by load_model says where it came from
    prediction = Predictor(package).predict(image, question, top_k=99).to_dict()
    return {"revision": package.revision, "from_cache": package.source.from_cache, **prediction}


def main() -> None:
    image, question = Path(sys.argv[2]).read_bytes(), sys.argv[3]
    report_each(sys.argv[1], lambda case: predict(case, image, question))


if __name__ == "__main__":
    main()
