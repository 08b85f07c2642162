"""Resolve each case's model to a folder (no loading): one JSON line per case, then whether torch
was imported (it must not be).

    python -m tests.children.hub_resolve CASES_JSON

A case is ``{"repo": ..., "revision": ..., "token": bool, "wrong": bool}``; with ``token``, the
one in ``TEST_HUB_TOKEN``; with ``wrong``, a token the Hub refuses.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from tests.children.cases import report_each
from vqa_engine.loading.hub import resolve_model


def resolve(case: dict[str, Any]) -> dict[str, Any]:
    token = os.environ["TEST_HUB_TOKEN"] if case.get("token") else None
    token = "hf_wrongWRONGwrong" if case.get("wrong") else token
    folder, source = resolve_model(case["repo"], revision=case.get("revision"), token=token)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return {"revision": source.revision, "from_cache": source.from_cache, "files": files}


def main() -> None:
    report_each(sys.argv[1], resolve)
    print(json.dumps({"torch imported": "torch" in sys.modules}))


if __name__ == "__main__":
    main()
