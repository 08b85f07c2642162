"""What the children that check many cases in one process share: one JSON line per case."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def report_each(cases_json: str, outcome: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Print, one JSON line per case of ``cases_json`` (a JSON list), what ``outcome(case)``
    returns, or the error it raised: its type and message."""
    for case in json.loads(cases_json):
        try:
            out = outcome(case)
        except Exception as exc:
            out = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(out), flush=True)
