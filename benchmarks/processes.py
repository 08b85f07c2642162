"""Child processes of a benchmark: ``python main.py`` as a host starts it, and a benchmark's own
helper process (users and fake platforms apart from the bot) that talks in JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from benchmarks.common import ROOT

#: where a child's output goes: a pipe, /dev/null, or a file
Sink = int | IO[Any]


def inherited_env(*, drop_prefixes: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a child, without any ``*_TOKEN`` (no real platform is ever
    reached) and without the variables named in ``drop`` or starting with ``drop_prefixes``."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_TOKEN") and not k.startswith(drop_prefixes) and k not in drop
    }


async def start_main(
    *args: str,
    env: dict[str, str],
    cwd: Path = ROOT,
    stdout: Sink = asyncio.subprocess.PIPE,
    stderr: Sink = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """``python main.py ARGS`` as a host starts it: its own environment, nothing on stdin."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "main.py"),
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )


async def read_until(stream: asyncio.StreamReader, needle: str, *, timeout: float = 120) -> None:
    """Read lines from ``stream`` until one contains ``needle``."""
    async with asyncio.timeout(timeout):
        while needle not in (await stream.readline()).decode(errors="replace"):
            pass


class Helper:
    """The parent's side of a helper process (``python -m MODULE ARGS``): it reads the helper's
    JSON lines and tells it, one word a line, when to go on."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin, self._stdout = process.stdin, process.stdout

    @classmethod
    async def start(cls, module: str, *args: str) -> Helper:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def read(self) -> Any:
        """The helper's next JSON line."""
        return json.loads(await self._stdout.readline())

    async def say(self, word: str) -> None:
        self._stdin.write(word.encode() + b"\n")
        await self._stdin.drain()

    async def last(self) -> Any:
        """The helper's last JSON line, once it has exited."""
        result = await self.read()
        await self.process.wait()
        return result


class Parent:
    """The helper process's side: JSON lines to the parent on stdout, its words on stdin."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    @classmethod
    async def connect(cls) -> Parent:
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    def tell(self, data: object) -> None:
        print(json.dumps(data), flush=True)

    async def wait(self) -> str:
        """The parent's next word."""
        return (await self._reader.readline()).decode().strip()
