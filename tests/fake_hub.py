"""A loopback Hugging Face Hub that the real huggingface_hub client (2.4.0) downloads from and pushes to.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` when it is imported,
so the code under test runs in child processes pointed at ``HF_ENDPOINT=hub.url``, and the fake
serves from a thread of its own (``with FakeHub(token) as hub:``) while the test blocks on them.
What the client asks, and so what the fake answers:

- downloads: ``HEAD``/``GET /{repo}/resolve/{revision}/{file}`` with ``X-Repo-Commit``, ``ETag``
  (the git blob id) and ``Content-Length``; ``snapshot_download`` first asks
  ``GET /api/models/{repo}/revision/{revision}`` (``sha``) and
  ``GET /api/models/{repo}/tree/{commit}?recursive=True`` (entries ``type``, ``path``, ``size``,
  ``oid``);
- errors by ``X-Error-Code``: ``RepoNotFound`` (401 without a token, so a private repo looks
  missing), ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``; a stopped Hub refuses
  connections (``HF_HUB_OFFLINE=1`` tests "no network" quickly: an unreachable Hub costs the client
  about 24 s of retries);
- uploads: ``repos/create``, ``branch``, ``preupload`` (every file "regular": no LFS or Xet) and
  the NDJSON ``commit`` with base64 contents; with a token the client sends
  ``Authorization: Bearer ...``.

A warm cache needs no fake at all: with ``HF_HUB_OFFLINE=1`` the client reads
``models--org--name/refs/main`` (the commit, no trailing newline) and
``snapshots/<commit>/<file>`` without a single request.

Every request is recorded (:class:`HubRecord`: whether it carried the Hub's token), so tests can
assert what was, or was not, asked.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.loopback import LoopbackServer, Record

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class FakeRepo:
    private: bool = False
    gated: bool = False  # metadata is public, files need an approved token (none is approved)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> sha


@dataclass(frozen=True)
class HubRecord(Record):
    """A request to the Hub; ``authorized``: it carried ``Bearer <the hub's token>``."""

    authorized: bool = False
    had_auth_header: bool = False


def blob_id(content: bytes) -> str:
    """The git blob id, which the Hub uses as the ETag and tree ``oid`` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def read_folder(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(data: Any, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


class FakeHub(LoopbackServer):
    """``with FakeHub(token) as hub:`` serves on ``hub.url`` until the block ends."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self._counter = itertools.count(1)

    @property
    def url(self) -> str:
        """The Hub's address (still known once stopped: connections to it are then refused)."""
        return self.root

    def add_routes(self, app: web.Application) -> None:
        repo = "/api/models/{org}/{name}"
        for method, route, handler in (
            ("POST", "/api/repos/create", self._create_repo),
            ("POST", "/api/validate-yaml", self._validate_yaml),  # a README.md is uploaded
            ("GET", repo, self._info),
            ("GET", repo + "/revision/{revision}", self._info),
            ("GET", repo + "/tree/{revision}", self._tree),
            ("GET", repo + "/tree/{revision}/{under:.+}", self._tree),
            ("POST", repo + "/preupload/{revision}", self._preupload),
            ("POST", repo + "/commit/{revision}", self._commit),
            ("POST", repo + "/branch/{revision}", self._branch),
            ("GET", "/{org}/{name}/resolve/{revision}/{path:.+}", self._resolve),
        ):
            endpoint = self._endpoint(f"{method} {route.replace(':.+', '')}", handler)
            if method == "GET":
                app.router.add_get(route, endpoint)  # and HEAD
            else:
                app.router.add_route(method, route, endpoint)
        app.router.add_route("*", "/{tail:.*}", self._endpoint("unknown", self._unknown))

    # -- content -----------------------------------------------------------------------------------

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        private: bool = False,
        gated: bool = False,
        replace: bool = True,
    ) -> str:
        """A new commit on ``branch`` holding ``files`` (on top of the branch's files unless ``replace``)."""
        repo = self.repos.setdefault(repo_id, FakeRepo(private=private, gated=gated))
        parent = repo.commits.get(repo.refs.get(branch, ""), {})
        sha = hashlib.sha1(f"{repo_id}:{next(self._counter)}".encode()).hexdigest()
        repo.commits[sha] = dict(files) if replace else {**parent, **files}
        repo.refs[branch] = sha
        return sha

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)]

    # -- plumbing ----------------------------------------------------------------------------------

    def _endpoint(
        self, route: str, handler: Callable[[web.Request, bool], Awaitable[Answer]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization")
            authorized = auth == f"Bearer {self.token}"
            failure = self.take_failure(route)
            if failure is not None and failure.hang:
                await self.held(route, path=request.path)
            try:
                if failure is not None and not failure.hang:
                    raise _HubError(failure.status, None, failure.message or f"injected {failure.status}")
                status, headers, body = await handler(request, authorized)
            except _HubError as exc:
                status, body = exc.status, json.dumps({"error": exc.message}).encode()
                headers = {"Content-Type": "application/json", "X-Error-Message": exc.message}
                if exc.code:
                    headers["X-Error-Code"] = exc.code
            self.recorder.add(
                HubRecord(
                    route,
                    None,
                    status,
                    path=request.path,
                    authorized=authorized,
                    had_auth_header=auth is not None,
                )
            )
            return web.Response(status=status, headers=headers, body=body)

        return endpoint

    def _repo(self, request: web.Request, authorized: bool) -> tuple[str, FakeRepo]:
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            raise _HubError(404 if authorized else 401, "RepoNotFound", "Repository not found")
        return repo_id, repo

    @staticmethod
    def _commit_of(repo: FakeRepo, revision: str) -> str:
        sha = repo.refs.get(revision, revision)
        if sha not in repo.commits:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    @staticmethod
    def _require_token(authorized: bool) -> None:
        if not authorized:
            raise _HubError(401, None, "Invalid username or password.")

    # -- reads -------------------------------------------------------------------------------------

    async def _info(self, request: web.Request, authorized: bool) -> Answer:
        repo_id, repo = self._repo(request, authorized)
        sha = self._commit_of(repo, request.match_info.get("revision", "main"))
        return _json(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "siblings": [{"rfilename": p} for p in repo.commits[sha]],
            }
        )

    async def _tree(self, request: web.Request, authorized: bool) -> Answer:
        _, repo = self._repo(request, authorized)
        files = repo.commits[self._commit_of(repo, request.match_info["revision"])]
        under = request.match_info.get("under", "")
        prefix = f"{under}/" if under else ""
        folders = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        entries: list[dict[str, Any]] = [
            {"type": "directory", "oid": blob_id(folder.encode()), "size": 0, "path": folder}
            for folder in folders
            if folder.startswith(prefix)
        ]
        entries += [
            {"type": "file", "oid": blob_id(content), "size": len(content), "path": path}
            for path, content in sorted(files.items())
            if path.startswith(prefix)
        ]
        return _json(entries)

    async def _resolve(self, request: web.Request, authorized: bool) -> Answer:
        repo_id, repo = self._repo(request, authorized)
        if repo.gated:
            raise _HubError(
                403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self.url}/{repo_id} to ask for access.",
            )
        revision, path = request.match_info["revision"], request.match_info["path"]
        sha = self._commit_of(repo, revision)
        content = repo.commits[sha].get(path)
        if content is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {revision}")
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": sha,
            "ETag": f'"{blob_id(content)}"',
        }
        return 200, headers, content

    async def _unknown(self, request: web.Request, authorized: bool) -> Answer:
        raise _HubError(404, None, f"no route for {request.method} {request.path}")

    # -- writes ------------------------------------------------------------------------------------

    async def _validate_yaml(self, request: web.Request, authorized: bool) -> Answer:
        return _json({"errors": [], "warnings": []})

    async def _create_repo(self, request: web.Request, authorized: bool) -> Answer:
        self._require_token(authorized)
        payload = await request.json()
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.repos:  # the real Hub names the existing repo in its 409
            return _json(
                {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}, 409
            )
        private = payload.get("private") is True or payload.get("visibility") == "private"
        self.add_commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs\n"}, private=private)
        return _json({"url": f"{self.url}/{repo_id}", "name": repo_id})

    async def _branch(self, request: web.Request, authorized: bool) -> Answer:
        self._require_token(authorized)
        _, repo = self._repo(request, authorized)
        branch = request.match_info["revision"]
        if branch in repo.refs:
            raise _HubError(409, None, f"Reference {branch} already exists")
        repo.refs[branch] = repo.refs["main"]
        return _json({})

    async def _preupload(self, request: web.Request, authorized: bool) -> Answer:
        self._require_token(authorized)
        _, repo = self._repo(request, authorized)
        revision = request.match_info["revision"]
        current = repo.commits[self._commit_of(repo, revision)]
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": blob_id(current[f["path"]]) if f["path"] in current else None,
            }
            for f in (await request.json())["files"]
        ]
        return _json({"files": files, "commitOid": repo.refs.get(revision, revision)})

    async def _commit(self, request: web.Request, authorized: bool) -> Answer:
        self._require_token(authorized)
        repo_id, repo = self._repo(request, authorized)
        revision = request.match_info["revision"]
        if revision not in repo.refs:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files: dict[str, bytes] = dict(repo.commits[repo.refs[revision]])
        for line in (await request.read()).splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file" and value["encoding"] == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif item["key"] != "header":
                raise _HubError(400, None, f"the fake Hub does not take {item['key']!r} operations")
        sha = self.add_commit(repo_id, files, branch=revision)
        return _json({"commitUrl": f"{self.url}/{repo_id}/commit/{sha}", "commitOid": sha})
