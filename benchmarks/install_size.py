"""What `pip install -r requirements.txt` puts on disk, with PyPI's torch (the CUDA build) and with
the CPU-only build, side by side: two fresh virtual environments, measured with the sizes of their
files (``du -sb``).

    python -m benchmarks.install_size [--cpu-index URL | --cpu-wheel FILE ...]

By default the CPU-only torch and torchvision come from PyTorch's CPU index (what
``pre-requirements.txt``, the Dockerfile and the recipes in ``docs/deploying.md`` use). Where that
index cannot be reached, ``--cpu-wheel`` installs CPU wheels at hand instead (torchvision then
comes from the package index without its dependencies, so that the CUDA build is not pulled back
in). Prints a table; writes ``benchmarks/results/install_size.json``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, result_path, write_result

REQUIREMENTS = ROOT / "requirements.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH = re.compile(r"^(torch|torchvision)==\S+", re.MULTILINE)


def size_of(folder: Path) -> int:
    """Bytes of the files under ``folder`` (apparent sizes, as ``du -sb``)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *args], check=True)


def build(venv: Path, *, cpu_index: str | None, cpu_wheels: list[Path]) -> dict[str, object]:
    """One fresh environment: the CUDA build (no CPU source given) or the CPU-only one."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    lines = [m.group(0) for m in TORCH.finditer(REQUIREMENTS.read_text())]  # torch==..., torchvision==...
    if cpu_wheels:
        pip(venv, *map(str, cpu_wheels))
        if not any("torchvision" in w.name for w in cpu_wheels):
            pip(venv, "--no-deps", *[line for line in lines if line.startswith("torchvision")])
        rest = venv / "requirements-without-torch.txt"
        rest.write_text(TORCH.sub("", REQUIREMENTS.read_text()))
        pip(venv, "-r", str(rest))
    elif cpu_index:
        pip(venv, "--index-url", cpu_index, *lines)
        pip(venv, "-r", str(REQUIREMENTS))
    else:
        pip(venv, "-r", str(REQUIREMENTS))
    site = next((venv / "lib").glob("python3*/site-packages"))
    versions = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "bytes": size_of(venv),
        "torch_bytes": size_of(site / "torch"),
        "cuda_libraries_bytes": size_of(site / "nvidia") + size_of(site / "triton")
        if (site / "nvidia").exists()
        else 0,
        "torch": versions,
        "seconds": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--cpu-index", default=CPU_INDEX, help=f"the CPU-only index (default {CPU_INDEX})")
    source.add_argument("--cpu-wheel", type=Path, action="append", default=[], help="CPU wheels at hand")
    parser.add_argument("--output", type=Path, default=result_path("install_size"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cuda = build(Path(tmp) / "cuda", cpu_index=None, cpu_wheels=[])
        cpu = build(Path(tmp) / "cpu", cpu_index=args.cpu_index, cpu_wheels=args.cpu_wheel)
    print("install               | on disk  | torch    | CUDA libraries + triton | torch version")
    for name, row in (("PyPI (CUDA build)", cuda), ("CPU-only build", cpu)):
        print(
            f"{name:21} | {row['bytes'] / 1e9:5.2f} GB | {row['torch_bytes'] / 1e9:5.2f} GB | "  # type: ignore[operator]
            f"{row['cuda_libraries_bytes'] / 1e9:5.2f} GB{'':14} | {row['torch']}"  # type: ignore[operator]
        )
    ratio = cuda["bytes"] / cpu["bytes"]  # type: ignore[operator]
    print(f"CPU-only is {ratio:.1f}x smaller")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cuda": cuda,
        "cpu": cpu,
        "cpu_source": [w.name for w in args.cpu_wheel] or args.cpu_index,  # no folder of this machine
        "ratio": ratio,
    }
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
