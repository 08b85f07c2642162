"""Start-up with a model from the Hub cache vs the bundled folder: process start to model loaded.

Serves a copy of ``models/easy-vqa-film`` from the loopback Hub used by the tests (the real
huggingface_hub client, no internet), fills a Hub cache once, then times, interleaved, fresh
processes that run ``vqa_engine.loading.hub.load_model`` and exit:

- the bundled folder (``MODEL_REPO_ID`` = a local path: no Hub code runs at all);
- the Hub repo with a warm cache and ``HF_HUB_OFFLINE=1`` (zero requests);
- the Hub repo with a warm cache, online (one ``model_info`` request, nothing downloaded);
- the Hub repo with a cold cache (the package downloaded over loopback), for scale;
- ``import torch``, the floor under all of them.

    python -m benchmarks.hub_start [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import BUNDLED_MODEL, ROOT, result_path, write_result
from tests.fake_hub import FakeHub, read_folder  # the loopback Hub of the tests

REPO = "org/easy-vqa-film"
#: the child: load_model as main.py does, timing its Hub part (resolve_model) on the way
LOAD = [sys.executable, "-m", "benchmarks.hub_start_child"]
#: one start-up: seconds, and what the child printed
Case = Callable[[], tuple[float, dict[str, object]]]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{done.stderr}")
    last = done.stdout.strip().splitlines()[-1:] or ["{}"]
    return elapsed, json.loads(last[0]) if last[0].startswith("{") else {}


def cases(hub: FakeHub, work: Path) -> dict[str, Case]:
    """Each way to start, its Hub cache filled where it needs one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and not k.endswith("_TOKEN")}
    base.update(PYTHONPATH=str(ROOT), NO_PROXY="127.0.0.1,localhost", HF_HUB_DISABLE_PROGRESS_BARS="1")
    home, warm = str(work / "home"), str(work / "warm")
    online = {**base, "HF_ENDPOINT": hub.url, "HF_HOME": home, "HF_HUB_CACHE": warm}
    offline = {**online, "HF_HUB_OFFLINE": "1"}
    # fill the warm cache
    timed([sys.executable, "-m", "vqa_engine.loading.hub", "download", REPO], online)

    def cold() -> dict[str, str]:
        cache = work / "cold"
        shutil.rmtree(cache, ignore_errors=True)
        return {**online, "HF_HUB_CACHE": str(cache)}

    return {
        "import torch": lambda: timed([sys.executable, "-c", "import torch"], base),
        "bundled folder": lambda: timed([*LOAD, str(BUNDLED_MODEL)], base),
        "Hub, warm cache, HF_HUB_OFFLINE=1": lambda: timed([*LOAD, REPO], offline),
        "Hub, warm cache, online": lambda: timed([*LOAD, REPO], online),
        "Hub, cold cache (download)": lambda: timed([*LOAD, REPO], cold()),
    }


def measure(runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Every case ``runs`` times, interleaved: seconds to loaded, and seconds resolving."""
    work = Path(tempfile.mkdtemp(prefix="hub-start-"))
    with FakeHub("unused") as hub:
        hub.add_commit(REPO, read_folder(BUNDLED_MODEL))
        starts = cases(hub, work)
        for run in starts.values():  # warm the page cache once
            run()
        samples: dict[str, list[float]] = {name: [] for name in starts}
        resolve: dict[str, list[float]] = {name: [] for name in starts}
        for _ in range(runs):
            for name, run in starts.items():
                elapsed, info = run()
                samples[name].append(elapsed)
                if "resolve_s" in info:
                    resolve[name].append(float(info["resolve_s"]))  # type: ignore[arg-type]
    shutil.rmtree(work, ignore_errors=True)
    return samples, resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=result_path("hub_start"))
    args = parser.parse_args()
    samples, resolve = measure(args.runs)
    bundled = statistics.median(samples["bundled folder"])
    rows = []
    header = f"{'start-up, process start to model loaded':<36} {'median s':>9} {'min s':>7} {'max s':>7}"
    print(f"{header} {'vs bundled':>11} {'resolve s':>10}")
    for name, values in samples.items():
        median = statistics.median(values)
        resolve_s = statistics.median(resolve[name]) if resolve[name] else None
        rows.append(
            {
                "case": name,
                "median_s": median,
                "min_s": min(values),
                "max_s": max(values),
                "ratio_to_bundled": median / bundled,
                "resolve_median_s": resolve_s,
                "runs": len(values),
            }
        )
        shown = f"{resolve_s:>10.3f}" if resolve_s is not None else f"{'':>10}"
        print(
            f"{name:<36} {median:>9.2f} {min(values):>7.2f} {max(values):>7.2f} "
            f"{median / bundled:>10.2f}x {shown}"
        )
    write_result(args.output, {"benchmark": "hub_start", "python": sys.version.split()[0], "rows": rows})


if __name__ == "__main__":
    main()
