"""What every benchmark needs: where things are, percentiles, a thread of its own, tables, results."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
#: the model every benchmark uses unless told otherwise
BUNDLED_MODEL = ROOT / "models" / "easy-vqa-film"
RESULTS = ROOT / "benchmarks" / "results"

T = TypeVar("T")
#: questions to ask, as (image bytes, question) pairs, in order
Jobs = list[tuple[bytes, str]]


def result_path(name: str) -> Path:
    """Where benchmark ``name`` writes its JSON result by default."""
    return RESULTS / f"{name}.json"


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it: results never name this machine."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by the nearest rank (``q`` = 0.5: the median)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def fresh_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread: torch's thread count is per thread once a thread has used it."""
    result: list[T] = []
    worker = threading.Thread(target=lambda: result.append(fn()))
    worker.start()
    worker.join()
    return result[0]


def write_result(path: Path, result: object, *, ensure_ascii: bool = True) -> None:
    """Write ``result`` as indented JSON to ``path`` (its folder made if need be) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=ensure_ascii) + "\n")
    print(f"\nwrote {shown(path)}")


def print_markdown_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, left: Collection[int] = ()
) -> None:
    """A Markdown table, ready to paste into ``benchmarks/README.md``; columns are right-aligned
    but those whose indexes are in ``left``."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if n in left else "---:" for n in range(len(columns))) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
