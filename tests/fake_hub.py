"""A loopback Hugging Face Hub that the real huggingface_hub client downloads from and pushes to.

Speaks what huggingface_hub 2.4.0 uses (as read from its source and measured): model info by
revision, the recursive tree listing, HEAD/GET ``resolve`` with ``X-Repo-Commit``/``ETag``, the
``X-Error-Code`` errors (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), and the upload
path: ``repos/create``, ``branch``, ``preupload`` (every file "regular", so no LFS/Xet) and the
NDJSON ``commit`` endpoint with base64 contents. Every request is recorded (method, path, whether
it carried the right token) so tests can assert what was, or was not, asked.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    private: bool = False
    gated: bool = False  # metadata is public, files need an approved token (none is approved)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> sha


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorized: bool  # carried "Bearer <the hub's token>"
    had_auth_header: bool


def blob_id(content: bytes) -> str:
    """The git blob id, which the Hub uses as the ETag and tree ``oid`` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def read_folder(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


class FakeHub:
    """``with FakeHub(token) as hub:`` serves on ``hub.url`` until the block ends (or ``stop()``)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: later connections are refused, as from a Hub that is down."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    # -- content -------------------------------------------------------------------------------

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
        with self._lock:
            repo = self.repos.setdefault(repo_id, FakeRepo(private=private, gated=gated))
            parent = repo.commits.get(repo.refs.get(branch, ""), {})
            content = dict(files) if replace else {**parent, **files}
            sha = self._new_sha(repo_id)
            repo.commits[sha] = content
            repo.refs[branch] = sha
            return sha

    def add_folder(self, repo_id: str, folder: Path, **options: Any) -> str:
        return self.add_commit(repo_id, read_folder(folder), **options)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _new_sha(self, repo_id: str) -> str:
        return hashlib.sha1(f"{repo_id}:{next(self._counter)}".encode()).hexdigest()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    # -- plumbing ----------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self, *, head: bool = False) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        auth = self.headers.get("Authorization")
        authorized = auth == f"Bearer {self.hub.token}"
        self.hub._record(Request(self.command, path, authorized, auth is not None))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, payload = self._route(url.path, body, authorized=authorized)
        except _HubError as exc:
            status, payload = exc.status, json.dumps({"error": exc.message}).encode()
            headers = {"Content-Type": "application/json", "X-Error-Message": exc.message}
            if exc.code:
                headers["X-Error-Code"] = exc.code
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _json(self, data: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(data).encode()

    # -- routes ------------------------------------------------------------------------------

    def _route(self, raw_path: str, body: bytes, *, authorized: bool) -> tuple[int, dict[str, str], bytes]:
        parts = [unquote(p) for p in raw_path.strip("/").split("/")]
        if parts[:3] == ["api", "repos", "create"] and self.command == "POST":
            return self._create_repo(json.loads(body or b"{}"), authorized=authorized)
        if parts[:2] == ["api", "validate-yaml"] and self.command == "POST":  # a README.md is uploaded
            return self._json({"errors": [], "warnings": []})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            if not rest and self.command == "GET":
                return self._info(repo_id, "main", authorized=authorized)
            if len(rest) == 2 and rest[0] == "revision" and self.command == "GET":
                return self._info(repo_id, rest[1], authorized=authorized)
            if len(rest) >= 2 and rest[0] == "tree" and self.command == "GET":
                return self._tree(repo_id, rest[1], "/".join(rest[2:]), authorized=authorized)
            if len(rest) == 2 and rest[0] == "preupload" and self.command == "POST":
                return self._preupload(repo_id, rest[1], json.loads(body), authorized=authorized)
            if len(rest) == 2 and rest[0] == "commit" and self.command == "POST":
                return self._commit(repo_id, rest[1], body, authorized=authorized)
            if len(rest) == 2 and rest[0] == "branch" and self.command == "POST":
                return self._branch(repo_id, rest[1], authorized=authorized)
        if len(parts) >= 5 and parts[2] == "resolve" and self.command in ("GET", "HEAD"):
            return self._resolve(
                f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), authorized=authorized
            )
        raise _HubError(404, None, f"no route for {self.command} {raw_path}")

    def _repo(self, repo_id: str, *, authorized: bool) -> FakeRepo:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            status = 404 if authorized else 401
            raise _HubError(status, "RepoNotFound", "Repository not found")
        return repo

    def _commit_of(self, repo_id: str, repo: FakeRepo, revision: str) -> str:
        sha = repo.refs.get(revision, revision)
        if sha not in repo.commits:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def _info(self, repo_id: str, revision: str, *, authorized: bool) -> tuple[int, dict[str, str], bytes]:
        repo = self._repo(repo_id, authorized=authorized)
        sha = self._commit_of(repo_id, repo, revision)
        return self._json(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "siblings": [{"rfilename": p} for p in repo.commits[sha]],
            }
        )

    def _tree(
        self, repo_id: str, revision: str, under: str, *, authorized: bool
    ) -> tuple[int, dict[str, str], bytes]:
        repo = self._repo(repo_id, authorized=authorized)
        files = repo.commits[self._commit_of(repo_id, repo, revision)]
        prefix = f"{under}/" if under else ""
        entries: list[dict[str, Any]] = []
        folders = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        for folder in folders:
            if folder.startswith(prefix):
                entries.append(
                    {"type": "directory", "oid": blob_id(folder.encode()), "size": 0, "path": folder}
                )
        for path, content in sorted(files.items()):
            if path.startswith(prefix):
                entries.append({"type": "file", "oid": blob_id(content), "size": len(content), "path": path})
        return self._json(entries)

    def _resolve(
        self, repo_id: str, revision: str, path: str, *, authorized: bool
    ) -> tuple[int, dict[str, str], bytes]:
        repo = self._repo(repo_id, authorized=authorized)
        if repo.gated:
            raise _HubError(
                403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self.hub.url}/{repo_id} to ask for access.",
            )
        sha = self._commit_of(repo_id, repo, revision)
        files = repo.commits[sha]
        if path not in files:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {revision}")
        content = files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": sha,
            "ETag": f'"{blob_id(content)}"',
        }
        return 200, headers, content

    # -- writes ------------------------------------------------------------------------------

    def _require_token(self, authorized: bool) -> None:
        if not authorized:
            raise _HubError(401, None, "Invalid username or password.")

    def _create_repo(self, payload: dict[str, Any], *, authorized: bool) -> tuple[int, dict[str, str], bytes]:
        self._require_token(authorized)
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.hub.repos:  # the real Hub names the existing repo in its 409
            return self._json(
                {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"}, 409
            )
        private = payload.get("private") is True or payload.get("visibility") == "private"
        self.hub.add_commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs\n"}, private=private)
        return self._json({"url": f"{self.hub.url}/{repo_id}", "name": repo_id})

    def _branch(self, repo_id: str, branch: str, *, authorized: bool) -> tuple[int, dict[str, str], bytes]:
        self._require_token(authorized)
        repo = self._repo(repo_id, authorized=authorized)
        if branch in repo.refs:
            raise _HubError(409, None, f"Reference {branch} already exists")
        repo.refs[branch] = repo.refs["main"]
        return self._json({})

    def _preupload(
        self, repo_id: str, revision: str, payload: dict[str, Any], *, authorized: bool
    ) -> tuple[int, dict[str, str], bytes]:
        self._require_token(authorized)
        repo = self._repo(repo_id, authorized=authorized)
        current = repo.commits[self._commit_of(repo_id, repo, revision)]
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": blob_id(current[f["path"]]) if f["path"] in current else None,
            }
            for f in payload["files"]
        ]
        return self._json({"files": files, "commitOid": repo.refs.get(revision, revision)})

    def _commit(
        self, repo_id: str, revision: str, body: bytes, *, authorized: bool
    ) -> tuple[int, dict[str, str], bytes]:
        self._require_token(authorized)
        repo = self._repo(repo_id, authorized=authorized)
        if revision not in repo.refs:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        changes: dict[str, bytes | None] = {}
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                assert value["encoding"] == "base64", value
                changes[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                changes[value["path"]] = None
            elif item["key"] != "header":
                raise _HubError(400, None, f"the fake Hub does not take {item['key']!r} operations")
        files = {**repo.commits[repo.refs[revision]]}
        for path, content in changes.items():
            if content is None:
                files.pop(path, None)
            else:
                files[path] = content
        sha = self.hub.add_commit(repo_id, files, branch=revision)
        return self._json({"commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}", "commitOid": sha})
