"""A real ``redis-server`` (Debian's package; ``.ci/run`` installs it) on a free loopback port, that a
test starts, kills (an outage: ``SIGKILL``, nothing saved) and starts again on the same port.

It persists nothing (``--save ""``, no append-only file), so a restart comes back empty, as a
Redis without persistence would. ``start()`` returns once the server logs that it accepts
connections; nothing sleeps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from types import TracebackType
from typing import Self

import pytest

from tests.loopback import free_port

READY = "Ready to accept connections"


def redis_server_binary() -> str:
    """``redis-server``'s path; fails under CI (it must be installed there), skips elsewhere."""
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("needs Debian's redis-server: apt-get install redis-server")
    return found


class RedisServer:
    """``with RedisServer() as redis: ... redis.url ... redis.kill() ... redis.start()``."""

    def __init__(self, *, password: str | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.password = password
        self._dir = tempfile.TemporaryDirectory(prefix="redis-test-")
        self._process: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start on this server's port; returns once it accepts connections."""
        if self.running:
            return self
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", self._dir.name, "--loglevel", "notice"]
        if self.password:
            argv += ["--requirepass", self.password]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._process = process
        assert process.stdout is not None
        for line in process.stdout:  # (it logs to stdout; the wait is for its line, not a sleep)
            self.log.append(line)
            if READY in line:
                # keep reading, so that its log never fills the pipe and blocks it
                threading.Thread(target=self._drain, args=(process,), daemon=True).start()
                return self
        process.wait(timeout=10)
        raise RuntimeError(f"redis-server did not start: {''.join(self.log)[-2000:]}")

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line)

    def kill(self) -> None:
        """An outage: SIGKILL (nothing is saved), and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
        self._dir.cleanup()
