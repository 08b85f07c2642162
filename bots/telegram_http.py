"""python-telegram-bot's HTTP transport on aiohttp instead of httpx.

PTB lets an application plug in its own ``BaseRequest``. We do, because at the concurrency a
busy bot runs at, httpx/httpcore spends its time scanning its connection pool: against the same
loopback Bot API, 32 concurrent requests ran at ~170 requests/s through httpx and ~3,000/s
through aiohttp (benchmarks/README.md), and every answer costs a few Bot API calls.

PTB's four timeouts keep their meaning: ``pool`` bounds the wait for a free connection (and says
so when the pool is exhausted), ``connect`` the TCP/TLS connect, ``read`` each wait for response
bytes, and ``write`` the upload; the whole request is bounded by their sum. Proxies come from
the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``), as with PTB's own transport.
They are read once per host, not by aiohttp's ``trust_env`` (which looks them up, and stats a
``.netrc``, in a thread for every request: a third of the bot's event-loop time per question).
"""

from __future__ import annotations

import asyncio
import urllib.request
from urllib.parse import urlencode, urlsplit

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

FORM = "application/x-www-form-urlencoded"
#: the type of PTB's "use the default" marker, without importing PTB's private modules
_DEFAULT = type(BaseRequest.DEFAULT_NONE)


class AiohttpRequest(BaseRequest):
    """One ``aiohttp.ClientSession`` with a bounded connection pool and PTB's timeout semantics."""

    def __init__(
        self,
        *,
        connection_pool_size: int = 32,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 10.0,
    ) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        self._pool = asyncio.Semaphore(connection_pool_size)
        self._proxies: dict[tuple[str, str], str | None] = {}  # (scheme, host) -> proxy URL

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )
            self._proxies.clear()  # the environment is read again after a restart

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = _pick(read_timeout, self._read_timeout)
        write = _pick(write_timeout, self._write_timeout)
        connect = _pick(connect_timeout, self._connect_timeout)
        pool = _pick(pool_timeout, self._pool_timeout)
        try:
            async with asyncio.timeout(pool):
                await self._pool.acquire()
        except TimeoutError:
            raise TimedOut(
                f"Pool timeout: all {self._pool_size} connections to the Bot API are in use "
                f"(waited {pool} s); the bot sends more than it can deliver"
            ) from None
        try:
            parts = (connect, write, read)
            total = None if None in parts else sum(p for p in parts if p is not None)
            timeout = aiohttp.ClientTimeout(total=total, connect=None, sock_connect=connect, sock_read=read)
            body, headers = encode_body(request_data)
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout, proxy=self._proxy_for(url)
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutError subclasses
            raise TimedOut(f"Timed out: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
        finally:
            self._pool.release()

    def _proxy_for(self, url: str) -> str | None:
        """The proxy the environment names for ``url``'s host (None: connect directly)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxies:
            proxies = urllib.request.getproxies()
            bypass = not key[1] or bool(urllib.request.proxy_bypass(key[1]))  # NO_PROXY
            self._proxies[key] = None if bypass else proxies.get(parts.scheme)
        return self._proxies[key]


def _pick(value: object, default: float | None) -> float | None:
    """PTB passes its "default" marker or an explicit timeout (None: wait forever)."""
    if isinstance(value, _DEFAULT):
        return default
    return value if value is None else float(value)  # type: ignore[arg-type]


def encode_body(request_data: RequestData | None) -> tuple[aiohttp.FormData | bytes | None, dict[str, str]]:
    """The body and its headers: form fields, or multipart when files are uploaded (as PTB's httpx
    transport sends them). Plain forms are encoded here: aiohttp's ``FormData`` would draw a random
    multipart boundary for each of them first."""
    if request_data is None:
        return None, {}
    if not request_data.contains_files:
        return urlencode(request_data.json_parameters).encode(), {"Content-Type": FORM}
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (file_name, content, mime_type) in request_data.multipart_data.items():
        form.add_field(name, content, filename=file_name, content_type=mime_type)
    return form, {}
