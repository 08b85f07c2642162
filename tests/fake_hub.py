"""A loopback Hugging Face Hub that the real huggingface_hub client (2.4.0) downloads from and pushes to.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` when it is imported,
so the code under test runs in child processes pointed at ``HF_ENDPOINT=hub.url``, and the fake
serves from a thread of its own (``with FakeHub(token) as hub:``) while the test blocks on them.
It holds model repos and Spaces, keyed by (type, id): a model ``org/x`` and a Space ``org/x`` are
two repos. What the client asks, and so what the fake answers (``{kind}`` is ``models`` or
``spaces``):

- downloads (models): ``HEAD``/``GET /{repo}/resolve/{revision}/{file}`` with ``X-Repo-Commit``,
  ``ETag`` (the git blob id) and ``Content-Length``; ``snapshot_download`` first asks
  ``GET /api/models/{repo}/revision/{revision}`` (``sha``) and
  ``GET /api/models/{repo}/tree/{commit}?recursive=True`` (entries ``type``, ``path``, ``size``,
  ``oid``);
- repo info: ``GET /api/{kind}/{repo}`` (and ``/revision/{revision}``): ``id``, ``sha``,
  ``private``, ``siblings``; a Space also ``sdk`` and ``runtime`` (its hardware);
- errors by ``X-Error-Code``: ``RepoNotFound`` (401 without a token, so a private repo looks
  missing), ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``; a write without the token is a
  401 "Invalid username or password."; a stopped Hub refuses connections (``HF_HUB_OFFLINE=1``
  tests "no network" quickly: an unreachable Hub costs the client about 24 s of retries);
- uploads: ``POST /api/repos/create`` (``type``; for a Space ``sdk``, ``hardware``, ``secrets``,
  ``variables``; ``private``/``visibility``), ``/api/validate-yaml`` (a README.md is uploaded; a
  Space's front matter needs an ``sdk`` and a ``short_description`` of at most 60 characters),
  ``POST /api/{kind}/{repo}/branch/{branch}``, ``.../preupload/{revision}`` and the NDJSON
  ``.../commit/{revision}`` (``file`` lines with base64 contents, ``lfsFile`` lines naming an LFS
  object by sha256, ``deletedFile``/``deletedFolder``; a ``parentCommit`` that is no longer the
  branch's head is refused with 412, as the Hub does); with a token the client sends
  ``Authorization: Bearer ...``;
- LFS (``FakeHub(token, lfs=True)``): preupload answers ``uploadMode: "lfs"`` for binary files (a
  NUL byte in the sample the client sends, or over 10 MB), as the Hub does; the client then asks
  ``POST /{repo}.git/info/lfs/objects/batch`` (``/spaces/{repo}.git/...`` for a Space), PUTs each
  new object to the ``href`` it got (``/lfs-upload/{sha256}``, checked against the bytes) and
  names it in an ``lfsFile`` commit line. hf_xet is installed and would take binaries to a Xet
  store the fake does not have: children of an ``lfs=True`` Hub need ``HF_HUB_DISABLE_XET=1``.
  Without ``lfs`` every file is "regular" (the client sends it base64 in the commit);
- a Space's settings: ``PUT /api/{kind}/{repo}/settings`` (``visibility``),
  ``POST /api/spaces/{repo}/secrets`` and ``/variables`` (``key``, ``value``) and ``/hardware``
  (``flavor``): recorded on the :class:`FakeRepo` (secret values too, so a test can check they
  arrived; they are never part of a request record).

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
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.loopback import LoopbackServer, Record

Answer = tuple[int, dict[str, str], bytes]

#: the URL word of each repo type (``/api/models/...``, ``/api/spaces/...``)
KINDS = {"model": "models", "space": "spaces"}
#: the Hub stores larger files in LFS whatever their content
LFS_THRESHOLD = 10 * 1024 * 1024
#: the Hub's limit on a Space's ``short_description``
SHORT_DESCRIPTION_MAX = 60
#: the repo a creation names (other routes name it in their path): its record's params
REPO = web.RequestKey("repo", str)


@dataclass
class FakeRepo:
    private: bool = False
    gated: bool = False  # metadata is public, files need an approved token (none is approved)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> sha
    sdk: str | None = None  # a Space's SDK (gradio, docker, ...); None for a model repo
    hardware: str | None = None  # a Space's requested hardware flavor
    secrets: dict[str, str] = field(default_factory=dict)  # a Space's secrets: name -> value
    variables: dict[str, str] = field(default_factory=dict)  # a Space's variables: name -> value
    sent_as: dict[str, str] = field(default_factory=dict)  # path -> "regular" or "lfs", as last committed
    foreign: bool = False  # another account's private repo: no token sees it, yet its name is taken


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


def front_matter(readme: bytes | str) -> dict[str, Any]:
    """The YAML block at the top of a README.md ({} when there is none)."""
    text = readme.decode() if isinstance(readme, bytes) else readme
    found = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.DOTALL)
    data = yaml.safe_load(found.group(1)) if found else None
    return data if isinstance(data, dict) else {}


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(data: Any, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _repo_type(request: web.Request) -> str:
    """``space`` for ``/api/spaces/...`` and ``/spaces/...``, else ``model``."""
    return "space" if request.path.startswith(("/api/spaces/", "/spaces/")) else "model"


class FakeHub(LoopbackServer):
    """``with FakeHub(token) as hub:`` serves on ``hub.url`` until the block ends (``lfs=True``:
    binary files go through LFS, see the module's docstring)."""

    def __init__(self, token: str, *, lfs: bool = False) -> None:
        super().__init__()
        self.token = token
        self.lfs = lfs
        self.store: dict[tuple[str, str], FakeRepo] = {}  # (repo type, repo id) -> repo
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, as PUT by the client
        self._counter = itertools.count(1)

    @property
    def url(self) -> str:
        """The Hub's address (still known once stopped: connections to it are then refused)."""
        return self.root

    @property
    def repos(self) -> dict[str, FakeRepo]:
        """The model repos by id (the live ``FakeRepo`` objects)."""
        return self.of_type("model")

    @property
    def spaces(self) -> dict[str, FakeRepo]:
        """The Spaces by id (the live ``FakeRepo`` objects)."""
        return self.of_type("space")

    def of_type(self, repo_type: str) -> dict[str, FakeRepo]:
        return {repo_id: repo for (kind, repo_id), repo in self.store.items() if kind == repo_type}

    def add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Callable[[web.Request, bool], Awaitable[Answer]]]] = [
            ("POST", "/api/repos/create", self._create_repo),
            ("POST", "/api/validate-yaml", self._validate_yaml),  # a README.md is uploaded
        ]
        for kind in KINDS.values():
            repo = f"/api/{kind}/{{org}}/{{name}}"
            routes += [
                ("GET", repo, self._info),
                ("GET", repo + "/revision/{revision}", self._info),
                ("GET", repo + "/tree/{revision}", self._tree),
                ("GET", repo + "/tree/{revision}/{under:.+}", self._tree),
                ("POST", repo + "/preupload/{revision}", self._preupload),
                ("POST", repo + "/commit/{revision}", self._commit),
                ("POST", repo + "/branch/{revision}", self._branch),
                ("PUT", repo + "/settings", self._settings),
            ]
        space = "/api/spaces/{org}/{name}"
        routes += [
            ("POST", space + "/secrets", self._secret),
            ("POST", space + "/variables", self._variable),
            ("POST", space + "/hardware", self._hardware),
            ("POST", "/{org}/{name}.git/info/lfs/objects/batch", self._lfs_batch),
            ("POST", "/spaces/{org}/{name}.git/info/lfs/objects/batch", self._lfs_batch),
            ("PUT", "/lfs-upload/{oid}", self._lfs_upload),
            ("GET", "/{org}/{name}/resolve/{revision}/{path:.+}", self._resolve),
        ]
        for method, route, handler in routes:
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
        repo_type: str = "model",
        sdk: str = "gradio",
    ) -> str:
        """A new commit on ``branch`` holding ``files`` (on top of the branch's files unless
        ``replace``); a new Space gets ``sdk`` and the Hub's default hardware."""
        repo = self.store.get((repo_type, repo_id))
        if repo is None:
            repo = FakeRepo(private=private, gated=gated)
            if repo_type == "space":
                repo.sdk, repo.hardware = sdk, "cpu-basic"
            self.store[repo_type, repo_id] = repo
        parent = repo.commits.get(repo.refs.get(branch, ""), {})
        sha = hashlib.sha1(f"{repo_type}:{repo_id}:{next(self._counter)}".encode()).hexdigest()
        repo.commits[sha] = dict(files) if replace else {**parent, **files}
        repo.refs[branch] = sha
        return sha

    def files(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> dict[str, bytes]:
        repo = self.store[repo_type, repo_id]
        return repo.commits[repo.refs.get(revision, revision)]

    def is_lfs(self, content: bytes | None, *, sample: bytes | None = None, size: int | None = None) -> bool:
        """Whether the Hub keeps this file in LFS: binary (a NUL byte early on) or large."""
        if not self.lfs:
            return False
        sample = sample if sample is not None else (content or b"")[:512]
        size = size if size is not None else len(content or b"")
        return b"\0" in sample or size > LFS_THRESHOLD

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
                    request.get(REPO),
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
        repo = self.store.get((_repo_type(request), repo_id))
        if repo is None or (repo.private and not authorized) or repo.foreign:
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

    def _writable(self, request: web.Request, authorized: bool) -> tuple[str, FakeRepo]:
        """The repo a write names: the token first, then the repo."""
        self._require_token(authorized)
        return self._repo(request, authorized)

    # -- reads -------------------------------------------------------------------------------------

    async def _info(self, request: web.Request, authorized: bool) -> Answer:
        repo_id, repo = self._repo(request, authorized)
        sha = self._commit_of(repo, request.match_info.get("revision", "main"))
        info: dict[str, Any] = {
            "id": repo_id,
            "sha": sha,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in repo.commits[sha]],
        }
        if _repo_type(request) == "space":
            hardware = {"current": None, "requested": repo.hardware}
            info |= {"sdk": repo.sdk, "runtime": {"stage": "BUILDING", "hardware": hardware}}
        else:
            info |= {"modelId": repo_id, "gated": "manual" if repo.gated else False}
        return _json(info)

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
        payload = await request.json()
        errors = []
        if payload.get("repoType") == "space":
            meta = front_matter(payload["content"])
            if meta.get("sdk") not in ("gradio", "docker", "static", "streamlit"):
                errors.append({"message": '"sdk" must be one of [gradio, docker, static, streamlit]'})
            if len(str(meta.get("short_description", ""))) > SHORT_DESCRIPTION_MAX:
                errors.append(
                    {
                        "message": '"short_description" length must be less than or equal to '
                        f"{SHORT_DESCRIPTION_MAX} characters long"
                    }
                )
        return _json({"errors": errors, "warnings": []}, 400 if errors else 200)

    async def _create_repo(self, request: web.Request, authorized: bool) -> Answer:
        payload = await request.json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}"
        request[REPO] = repo_id
        self._require_token(authorized)
        prefix = "" if repo_type == "model" else f"{KINDS[repo_type]}/"
        if (repo_type, repo_id) in self.store:  # the real Hub names the existing repo in its 409
            return _json(
                {
                    "error": f"You already created this {repo_type} repo",
                    "url": f"{self.url}/{prefix}{repo_id}",
                },
                409,
            )
        if repo_type == "space" and not payload.get("sdk"):
            raise _HubError(400, None, "sdk is required for a Space")
        private = payload.get("private") is True or payload.get("visibility") == "private"
        self.add_commit(
            repo_id,
            {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
            private=private,
            repo_type=repo_type,
            sdk=payload.get("sdk") or "gradio",
        )
        repo = self.store[repo_type, repo_id]
        if repo_type == "space":
            repo.hardware = payload.get("hardware") or "cpu-basic"
            repo.secrets = {item["key"]: item["value"] for item in payload.get("secrets") or []}
            repo.variables = {item["key"]: item["value"] for item in payload.get("variables") or []}
        return _json({"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id})

    async def _branch(self, request: web.Request, authorized: bool) -> Answer:
        _, repo = self._writable(request, authorized)
        branch = request.match_info["revision"]
        if branch in repo.refs:
            raise _HubError(409, None, f"Reference {branch} already exists")
        repo.refs[branch] = repo.refs["main"]
        return _json({})

    async def _settings(self, request: web.Request, authorized: bool) -> Answer:
        _, repo = self._writable(request, authorized)
        payload = await request.json()
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        return _json({})

    async def _secret(self, request: web.Request, authorized: bool) -> Answer:
        _, repo = self._writable(request, authorized)
        payload = await request.json()
        repo.secrets[payload["key"]] = payload["value"]
        return _json({})

    async def _variable(self, request: web.Request, authorized: bool) -> Answer:
        _, repo = self._writable(request, authorized)
        payload = await request.json()
        repo.variables[payload["key"]] = payload["value"]
        return _json({key: {"value": value} for key, value in repo.variables.items()})

    async def _hardware(self, request: web.Request, authorized: bool) -> Answer:
        _, repo = self._writable(request, authorized)
        repo.hardware = (await request.json())["flavor"]
        return _json({"stage": "BUILDING", "hardware": {"current": None, "requested": repo.hardware}})

    def _oid(self, content: bytes) -> str:
        """What preupload says a stored file is: its sha256 when in LFS, else its git blob id (the
        client compares it with its own to skip unchanged files)."""
        return hashlib.sha256(content).hexdigest() if self.is_lfs(content) else blob_id(content)

    async def _preupload(self, request: web.Request, authorized: bool) -> Answer:
        _, repo = self._writable(request, authorized)
        revision = request.match_info["revision"]
        current = repo.commits[self._commit_of(repo, revision)]
        files = []
        for item in (await request.json())["files"]:
            lfs = self.is_lfs(None, sample=base64.b64decode(item["sample"]), size=item["size"])
            stored = current.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": self._oid(stored) if stored is not None else None,
                }
            )
        return _json({"files": files, "commitOid": repo.refs.get(revision, revision)})

    async def _lfs_batch(self, request: web.Request, authorized: bool) -> Answer:
        self._writable(request, authorized)
        objects = []
        for item in (await request.json())["objects"]:
            entry: dict[str, Any] = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.lfs_objects:  # else: already stored, nothing to send
                href = f"{self.url}/lfs-upload/{item['oid']}"
                entry["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(entry)
        return _json({"transfer": "basic", "objects": objects})

    async def _lfs_upload(self, request: web.Request, authorized: bool) -> Answer:
        oid, content = request.match_info["oid"], await request.read()
        if hashlib.sha256(content).hexdigest() != oid:
            raise _HubError(400, None, f"the content sent does not hash to {oid}")
        self.lfs_objects[oid] = content
        return 200, {}, b""

    async def _commit(self, request: web.Request, authorized: bool) -> Answer:
        repo_id, repo = self._writable(request, authorized)
        revision = request.match_info["revision"]
        if revision not in repo.refs:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files: dict[str, bytes] = dict(repo.commits[repo.refs[revision]])
        sent_as: dict[str, str] = {}
        for line in (await request.read()).splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                parent = value.get("parentCommit")
                if parent is not None and parent != repo.refs[revision]:
                    raise _HubError(412, None, "A commit has happened since. Please refresh and try again.")
            elif key == "file" and value["encoding"] == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
                sent_as[value["path"]] = "regular"
            elif key == "lfsFile":
                content = self.lfs_objects.get(value["oid"])
                if content is None:
                    raise _HubError(
                        400, None, f"LFS object {value['oid']} of {value['path']} was never uploaded"
                    )
                files[value["path"]] = content
                sent_as[value["path"]] = "lfs"
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise _HubError(400, None, f"the fake Hub does not take {key!r} operations")
        sha = self.add_commit(repo_id, files, branch=revision, repo_type=_repo_type(request))
        repo.sent_as = {p: how for p, how in {**repo.sent_as, **sent_as}.items() if p in files}
        prefix = "" if _repo_type(request) == "model" else "spaces/"
        return _json({"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{sha}", "commitOid": sha})
