"""Load each case's backend (``load_backend``, as the service does) and answer one question: one
JSON line per case, with what loaded.

    python -m tests.children.load_backends CASES_JSON IMAGE QUESTION

A case is the keyword arguments of ``ModelOptions`` (``{"model_repo_id": ..., "quantize": ...}``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from vqa_engine.loading.loader import load_backend
from vqa_engine.options import ModelOptions


def one(case: dict[str, Any], image: bytes, question: str) -> dict[str, Any]:
    try:
        backend = load_backend(ModelOptions(device="cpu", **case))
        prediction = backend.predict(image, question, top_k=3).to_dict()
        return {"info": backend.info.to_dict(), **prediction}
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


def main() -> None:
    image = Path(sys.argv[2]).read_bytes()
    for case in json.loads(sys.argv[1]):
        print(json.dumps(one(case, image, sys.argv[3])), flush=True)


if __name__ == "__main__":
    main()
