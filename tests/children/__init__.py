"""Programs the tests run as child processes (``python -m tests.children.NAME``): where a test
needs a fresh interpreter (what an import pulls in) or settings read at import (huggingface_hub's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def run_child(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m tests.children.NAME ARGS`` from the repository root; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", f"tests.children.{name}", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
