"""The process ``benchmarks.hub_start`` times: load a model as ``main.py`` does, then exit.

    python -m benchmarks.hub_start_child MODEL_REPO_ID

Prints one JSON line: the seconds spent resolving the model (the Hub's part: importing
huggingface_hub, asking for the commit, finding or fetching the files) and the revision loaded.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from vqa_engine.loading import hub


def main() -> None:
    resolve, spent = hub.resolve_model, {}

    def timed_resolve(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return resolve(*args, **kwargs)
        finally:
            spent["resolve_s"] = time.perf_counter() - start

    hub.resolve_model = timed_resolve  # type: ignore[assignment]  # this process only, to time it
    package = hub.load_model(sys.argv[1], device="cpu")
    print(json.dumps({**spent, "revision": package.revision}))


if __name__ == "__main__":
    main()
