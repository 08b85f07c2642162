"""Cold start of ``main.py ask``: process start to printed answer, beside its floor (interpreter
start, ``import torch``), all measured in one run, interleaved, so the machine's noise hits each alike.

    python -m benchmarks.cold_start [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, result_path, write_result

IMAGE = ROOT / "examples" / "blue_circle.png"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "main.py ask (text)": [
        sys.executable,
        str(ROOT / "main.py"),
        "ask",
        str(IMAGE),
        "what shape is in the image?",
    ],
    "main.py ask --json": [
        sys.executable,
        str(ROOT / "main.py"),
        "ask",
        str(IMAGE),
        "what color is the shape?",
        "--json",
    ],
}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=result_path("cold_start"))
    args = parser.parse_args()
    for cmd in COMMANDS.values():  # warm the page cache once
        timed(cmd)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            samples[name].append(timed(cmd))
    torch_s = statistics.median(samples["import torch"])
    rows = []
    print(f"{'command':<22} {'median s':>9} {'min s':>7} {'max s':>7} {'vs import torch':>16}")
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append(
            {
                "command": name,
                "median_s": median,
                "min_s": min(values),
                "max_s": max(values),
                "ratio_to_import_torch": median / torch_s,
                "runs": len(values),
            }
        )
        print(f"{name:<22} {median:>9.2f} {min(values):>7.2f} {max(values):>7.2f} {median / torch_s:>15.2f}x")
    write_result(args.output, {"benchmark": "cold_start", "python": sys.version.split()[0], "rows": rows})


if __name__ == "__main__":
    main()
