"""Load each case's model as ``main.py`` does and answer one question: one JSON line per case.

    python -m tests.children.hub_predict CASES_JSON IMAGE QUESTION

A case is ``{"repo": ..., "revision": ..., "token": bool}``; with ``token``, the one in
``TEST_HUB_TOKEN``. Several cases in one child pay for starting torch once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from vqa_engine.loading.hub import load_model
from vqa_engine.modular.predictor import Predictor


def one(case: dict[str, Any], image: bytes, question: str) -> dict[str, Any]:
    token = os.environ["TEST_HUB_TOKEN"] if case.get("token") else None
    try:
        package = load_model(case["repo"], revision=case.get("revision"), token=token, device="cpu")
        assert package.source is not None  # a model loaded by load_model says where it came from
        prediction = Predictor(package).predict(image, question, top_k=99).to_dict()
        return {"revision": package.revision, "from_cache": package.source.from_cache, **prediction}
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


def main() -> None:
    image = Path(sys.argv[2]).read_bytes()
    for case in json.loads(sys.argv[1]):
        print(json.dumps(one(case, image, sys.argv[3])), flush=True)


if __name__ == "__main__":
    main()
