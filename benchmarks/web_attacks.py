"""What attacks on the web front end cost the server: memory, and the service to everyone else.

    python -m benchmarks.web_attacks [--bodies 5] [--size-mb 100] [--probes 50]

``python main.py web`` runs as a child process, as a host runs it. Against it, in turn:

- **declared**: ``--bodies`` requests declaring ``--size-mb`` MB (``Content-Length``) to Gradio's
  queue route, each sending its first bytes;
- **streamed**: as many bodies of that size sent in chunks without a length, to the queue route
  and to ``/api/v1/answer`` (a multipart image), as fast as the server reads;
- **paths**: requests naming server files instead of an upload (``/etc/passwd``, ``/dev/zero``...).

Reported: the child's resident memory (psutil) before and after each round, what each attack
was answered, how long an attack took to be refused, and ``/healthz``'s p50 latency before and
after all of them (the same server, side by side: the ratio says whether the others are still
served as before). Prints a table; writes ``benchmarks/results/web_attacks.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import result_path, write_result
from benchmarks.processes import inherited_env, start_main
from tests.loopback import free_port

JOIN = "/gradio_api/queue/join"
MB = 2**20
#: one attack: the request's head, how many body chunks follow it, the chunk
Attack = tuple[bytes, int, bytes]


async def request(port: int, head: bytes, body_chunks: int = 0, chunk: bytes = b"") -> tuple[bytes, float]:
    """Send ``head`` then up to ``body_chunks`` chunks while the server reads; (status, seconds)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        answer = asyncio.create_task(reader.read(65536))
        with contextlib.suppress(ConnectionError):
            for _ in range(body_chunks):
                if answer.done():
                    break
                writer.write(chunk)
                await writer.drain()
        response = await asyncio.wait_for(answer, 60)
    finally:
        writer.close()
    return response.split(b" ", 2)[1] if response else b"closed", time.perf_counter() - started


def declared(size: int) -> bytes:
    return (
        f"POST {JOIN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n[0,0,0"
    ).encode()


def chunked(path: str, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def path_event(path: str) -> bytes:
    body = json.dumps(
        {
            "data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "q"],
            "fn_index": 0,
            "session_hash": "x",
        }
    ).encode()
    head = f"POST {JOIN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)


async def healthz_p50(port: int, n: int) -> float:
    times = []
    for _ in range(n):
        _, seconds = await request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        times.append(seconds)
    return statistics.median(times) * 1000


def attacks(bodies: int, size_mb: int) -> list[tuple[str, list[Attack]]]:
    """The rounds of attacks, each a name and its requests."""
    size = size_mb * MB
    piece = b"0," * (MB // 2)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    part = (
        b'--b\r\nContent-Disposition: form-data; name="question"\r\n\r\nq\r\n'
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    )
    first_fields = b"%x\r\n%s\r\n" % (len(part), part)  # the form's question and the image's head
    multipart = chunked("/api/v1/answer", "multipart/form-data; boundary=b") + first_fields
    return [
        ("declared JSON to the queue", [(declared(size), 0, b"")] * bodies),
        ("streamed JSON to the queue", [(chunked(JOIN, "application/json"), size // MB, frame)] * bodies),
        ("streamed image to /api/v1/answer", [(multipart, size // MB, frame)] * bodies),
        (
            "server paths as the image",
            [(path_event(p), 0, b"") for p in ("/etc/passwd", "/proc/self/environ", "/dev/zero", "/")],
        ),
    ]


async def until_ready(port: int) -> None:
    """Wait until the server answers ``/readyz`` with 200 (a safety net of 60 s)."""
    for _ in range(600):
        with contextlib.suppress(OSError):
            status, _ = await request(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if status == b"200":
                return
        await asyncio.sleep(0.1)


async def attack(port: int, process: psutil.Process, name: str, requests: list[Attack]) -> dict[str, Any]:
    """One round of attacks, one after another: what they were answered and the memory it cost."""
    rss_before = process.memory_info().rss
    answers = [await request(port, head, n, chunk) for head, n, chunk in requests]
    return {
        "attack": name,
        "requests": len(requests),
        "answered": sorted({status.decode() for status, _ in answers}),
        "refused_in_ms_p50": statistics.median(s for _, s in answers) * 1000,
        "rss_before_mb": rss_before / MB,
        "rss_after_mb": process.memory_info().rss / MB,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="web-attacks-"))
    env = inherited_env() | {
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "uploads"),
        "PREDICTION_LOG": str(tmp / "p.jsonl"),
        "DEVICE": "cpu",
        "LOG_LEVEL": "WARNING",
    }
    child = await start_main(
        "web", "--host", "127.0.0.1", "--port", str(port), env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await until_ready(port)
        before_p50 = await healthz_p50(port, args.probes)
        process = psutil.Process(child.pid)
        rows = [await attack(port, process, name, r) for name, r in attacks(args.bodies, args.size_mb)]
        after_p50 = await healthz_p50(port, args.probes)
    finally:
        child.terminate()
        await child.wait()
    return {
        "bodies": args.bodies,
        "size_mb": args.size_mb,
        "rounds": rows,
        "healthz_p50_ms_before": before_p50,
        "healthz_p50_ms_after": after_p50,
        "exit_code_on_sigterm": child.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bodies", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--probes", type=int, default=50)
    result = asyncio.run(run(parser.parse_args()))
    print(
        f"{'attack':36} {'requests':>8} {'answered':>10} {'refused in':>11} "
        f"{'RSS before':>11} {'RSS after':>10} {'growth':>8}"
    )
    for row in result["rounds"]:
        growth = row["rss_after_mb"] - row["rss_before_mb"]
        print(
            f"{row['attack']:36} {row['requests']:>8} {','.join(row['answered']):>10} "
            f"{row['refused_in_ms_p50']:>8.1f} ms {row['rss_before_mb']:>8.0f} MB "
            f"{row['rss_after_mb']:>7.0f} MB {growth:>+5.0f} MB"
        )
    before, after = result["healthz_p50_ms_before"], result["healthz_p50_ms_after"]
    print(f"/healthz p50: {before:.2f} ms before, {after:.2f} ms after ({after / before:.2f}x); "
          f"exit code on SIGTERM: {result['exit_code_on_sigterm']}")  # fmt: skip
    write_result(result_path("web_attacks"), result)


if __name__ == "__main__":
    main()
