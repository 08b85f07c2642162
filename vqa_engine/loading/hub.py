"""Models on the Hugging Face Hub: what ``MODEL_REPO_ID`` names, fetched the way users publish them.

``MODEL_REPO_ID`` is a local folder (used as is) or a Hub repo id. For a repo, only the files a
package needs (``package_format.download_patterns``: ours, ONNX, or a transformers model's
weights and processor) are downloaded, into the standard Hub cache (``HF_HOME`` /
``HF_HUB_CACHE``), so a repo that also holds checkpoints or data costs nothing extra. When the Hub
cannot be reached (or ``HF_HUB_OFFLINE=1``) a cached copy is used, with a warning. Every failure is
a ``ModelPackageError`` subclass whose message is one line saying what to do; the token never
appears in a message or a log line.

    python -m vqa_engine.loading.hub push FOLDER --repo ORG/NAME [--private] [--branch B] [--message M]
    python -m vqa_engine.loading.hub download ORG/NAME [--revision R]   # fill the cache (an image build)

This module imports neither torch nor huggingface_hub at import time: ``load_model`` and ``push``
import torch (to load or validate a package), the Hub library is imported on first Hub use.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqa_engine.errors import ModelAccessError, ModelDownloadError, ModelNotFoundError, ModelPackageError
from vqa_engine.modular.package_format import (
    PACKAGE_FILES,
    ModelSource,
    detect_kind,
    download_patterns,
    missing_files,
)

if TYPE_CHECKING:
    from vqa_engine.modular.package import ModelPackage

log = logging.getLogger(__name__)

DEFAULT_REVISION = "main"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# the Hub's rule: [namespace/]name, letters, digits, "-", "_", "."; no "--" or ".." (checked below)
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
_NEEDS = (
    "a model package needs model.safetensors, vocab.json and answers.txt (plus config.json), "
    "or the seed's best_modular_model.pth, vocab.pkl and data/answer_space.txt; or model.onnx with "
    "config.json, vocab.json and answers.txt; or a transformers model's config.json, weights and processor "
    "(and a chat template, for a vision-language model)"
)


def resolve_model(
    repo_id: str, *, revision: str | None = None, token: str | None = None
) -> tuple[Path, ModelSource]:
    """The folder holding the package ``repo_id`` names, and where it came from.

    A local folder is returned as is. A Hub repo id is resolved to a commit (``revision``: branch,
    tag or commit; default ``main``) and its package files are downloaded into the Hub cache; the
    snapshot folder is returned. ``token`` defaults to huggingface_hub's own (``HF_TOKEN`` or a
    saved login).

    Raises ``ModelNotFoundError`` (no such folder, repo, revision or required file),
    ``ModelAccessError`` (private or gated) and ``ModelDownloadError`` (Hub unreachable or
    offline with nothing cached, download broken).
    """
    folder = Path(repo_id).expanduser()
    if folder.is_dir():
        return folder, ModelSource(repo_id=repo_id)
    if not _looks_like_repo_id(repo_id):
        raise ModelNotFoundError(
            f"MODEL_REPO_ID={repo_id!r} is not a model folder on this machine, "
            "nor a Hugging Face Hub repo id (ORG/NAME)"
        )
    hub = _Hub(repo_id, token)
    with _scrubbed_logs(hub.secrets):
        return hub.resolve(revision)


def load_model(
    repo_id: str, *, revision: str | None = None, token: str | None = None, device: str = "auto"
) -> ModelPackage:
    """``resolve_model`` + ``resolve_device`` + ``load_package``: the configured model, ready.

    ``device`` is ``auto``, ``cpu`` or ``cuda`` (``cuda`` without a GPU runs on the CPU, with a
    warning). Raises what ``resolve_model`` and ``load_package`` raise (``ModelPackageError``).
    """
    from vqa_engine.device import resolve_device
    from vqa_engine.modular.package import load_package

    folder, source = resolve_model(repo_id, revision=revision, token=token)
    package = load_package(folder, device=resolve_device(device))
    package.source = source
    return package


@dataclass(frozen=True)
class PushResult:
    """What ``push`` made: the commit (the current one when nothing changed) and where to see it."""

    repo_id: str
    commit: str | None
    url: str


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    branch: str | None = None,
    message: str | None = None,
    token: str | None = None,
) -> PushResult:
    """Publish the package in ``folder`` to the Hub repo ``repo_id`` (created if needed).

    The package (ours, or an ONNX package) is loaded first, so a broken one is refused before
    anything is sent; only package files are uploaded. ``branch`` is created from the default
    branch when missing. Raises ``ModelPackageError`` (a subclass naming what to fix).
    """
    from vqa_engine.backends.folder import open_folder

    folder = Path(folder)
    if folder.is_dir() and detect_kind(folder) in ("transformers", "vision-language"):
        raise ModelPackageError(
            f"{folder} holds a transformers model: publish it with transformers' own push_to_hub, "
            "which uploads its processor files too"
        )
    open_folder(folder)  # refuse an inconsistent package: its message names the file at fault
    if not _looks_like_repo_id(repo_id):
        raise ModelNotFoundError(f"{repo_id!r} is not a Hugging Face Hub repo id (ORG/NAME)")
    hub = _Hub(repo_id, token)
    with _scrubbed_logs(hub.secrets):
        return hub.push(folder, private=private, branch=branch, message=message)


def _looks_like_repo_id(text: str) -> bool:
    return bool(_REPO_ID.fullmatch(text)) and "--" not in text and ".." not in text


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _ScrubFilter(logging.Filter):
    """Rewrites log records so that no secret reaches a handler, whichever library logged it."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _scrub(message, self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


@contextmanager
def filtered_hub_logs(log_filter: logging.Filter) -> Iterator[None]:
    """While Hub calls run, every handler (ours, the root's, huggingface_hub's) applies
    ``log_filter``: whichever library logs, a filter that drops secrets sees the record."""
    handlers = [*logging.getLogger().handlers, *logging.getLogger("huggingface_hub").handlers]
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)


@contextmanager
def _scrubbed_logs(secrets: tuple[str, ...]) -> Iterator[None]:
    """While Hub calls run, no handler shows the secrets."""
    if not secrets:
        yield
        return
    with filtered_hub_logs(_ScrubFilter(secrets)):
        yield


class _Hub:
    """One repo on the Hub, with huggingface_hub imported and the token kept out of every message."""

    def __init__(self, repo_id: str, token: str | None) -> None:
        import httpx2
        from huggingface_hub import HfApi, constants, errors, get_token

        self.repo_id = repo_id
        self.token = token
        self.constants = constants
        self.errors = errors
        self.transport_errors = (httpx2.TransportError, errors.OfflineModeIsEnabled)
        self.api = HfApi(token=token)
        effective = token or get_token()  # huggingface_hub's own when none is given
        self.has_token = bool(effective)
        self.secrets = tuple(s for s in {token, effective} if s)

    # ------------------------------------------------------------------ download

    def resolve(self, revision: str | None) -> tuple[Path, ModelSource]:
        requested = revision or DEFAULT_REVISION
        if self.constants.HF_HUB_OFFLINE:
            return self._from_cache(revision, reason=None)
        try:
            info = self.api.model_info(
                self.repo_id, revision=requested, timeout=self.constants.HF_HUB_ETAG_TIMEOUT
            )
        except Exception as exc:
            if not self._unreachable(exc):
                raise self._translate(exc, requested) from exc
            return self._from_cache(revision, reason=self._short(exc))
        sha = info.sha
        if not sha:
            raise ModelDownloadError(f"the Hub sent no commit for {self.repo_id}@{requested}")
        siblings = getattr(info, "siblings", None)
        files = [s.rfilename for s in siblings] if siblings is not None else None
        folder = self._download(requested, sha, download_patterns(files))
        self._remember_ref(requested, sha)
        self._check_complete(folder, sha)
        return folder, ModelSource(repo_id=self.repo_id, revision=sha)

    def _download(self, requested: str, sha: str, patterns: list[str]) -> Path:
        from huggingface_hub import ResolvedRevision, snapshot_download

        pinned = ResolvedRevision(sha, initial=requested, repo_id=self.repo_id)
        try:
            path = snapshot_download(
                self.repo_id,
                revision=pinned,
                token=self.token,
                allow_patterns=patterns,
                etag_timeout=self.constants.HF_HUB_ETAG_TIMEOUT,
            )
        except Exception as exc:
            if isinstance(exc, self.errors.LocalEntryNotFoundError) or self._unreachable(exc):
                raise ModelDownloadError(
                    f"the download of {self.repo_id} (commit {sha[:7]}) from {self.constants.ENDPOINT} "
                    f"broke off ({self._short(exc)}); check the network and try again"
                ) from exc
            raise self._translate(exc, requested) from exc
        return Path(path)

    def _from_cache(self, revision: str | None, *, reason: str | None) -> tuple[Path, ModelSource]:
        """The cached snapshot of ``revision``: the Hub is unreachable (``reason``) or offline (None)."""
        from huggingface_hub import get_cached_repo_tree, snapshot_download

        requested = revision or DEFAULT_REVISION
        try:  # what the online start fetched was chosen from this listing: choose the same
            files: list[str] | None = [f.path for f in get_cached_repo_tree(self.repo_id, revision=requested)]
        except (self.errors.CachedRepoTreeNotFoundError, OSError, ValueError):
            files = None
        try:
            path = Path(
                snapshot_download(
                    self.repo_id,
                    revision=requested,
                    allow_patterns=download_patterns(files),
                    local_files_only=True,
                )
            )
        except self.errors.LocalEntryNotFoundError as exc:
            cache = self.constants.HF_HUB_CACHE
            what = f"{self.repo_id}@{requested}" if revision else self.repo_id
            if isinstance(exc, self.errors.IncompleteSnapshotError):
                state = f"the cached copy of {what} in {cache} is incomplete"
            else:
                state = f"{what} is not in the Hugging Face cache ({cache})"
            if reason is None:
                raise ModelDownloadError(
                    f"HF_HUB_OFFLINE is set and {state}: run once with network access "
                    "(or unset HF_HUB_OFFLINE) to download it"
                ) from exc
            raise ModelDownloadError(
                f"cannot reach the Hugging Face Hub at {self.constants.ENDPOINT} ({reason}) and {state}: "
                "check the network (or HF_ENDPOINT) and try again"
            ) from exc
        sha = path.name
        self._check_complete(path, sha)
        if reason is None:
            log.info("HF_HUB_OFFLINE is set: using the cached %s at commit %s", self.repo_id, sha[:7])
        else:
            log.warning(
                "cannot reach the Hugging Face Hub at %s (%s); starting from the cached %s (%s, commit %s)",
                self.constants.ENDPOINT,
                reason,
                self.repo_id,
                requested,
                sha[:7],
            )
        return path, ModelSource(repo_id=self.repo_id, revision=sha, from_cache=True)

    def _check_complete(self, folder: Path, sha: str) -> None:
        missing = missing_files(folder, detect_kind(folder))
        if missing is not None:
            raise ModelNotFoundError(f"{self.repo_id} (commit {sha[:7]}) has {missing}: {_NEEDS}")

    def _remember_ref(self, revision: str, sha: str) -> None:
        """Record ``revision -> sha`` in the cache (``refs/``), so an offline start finds the snapshot.

        huggingface_hub skips this when handed an already-resolved revision, as we do (one
        ``model_info`` call, then every file pinned to that one commit).
        """
        from huggingface_hub.file_download import repo_folder_name

        if _COMMIT.fullmatch(revision):
            return
        ref = Path(self.constants.HF_HUB_CACHE) / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        ref = ref / "refs" / revision
        try:
            if ref.is_file() and ref.read_text() == sha:
                return
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
            tmp.write_text(sha)  # no trailing newline: huggingface_hub reads the file verbatim
            os.replace(tmp, ref)
        except OSError as exc:  # a read-only cache still serves this run
            log.warning("could not record %s -> %s in the Hub cache: %s", revision, sha[:7], exc)

    # ------------------------------------------------------------------ upload

    def push(self, folder: Path, *, private: bool, branch: str | None, message: str | None) -> PushResult:
        name = self.repo_id
        try:
            url = self.api.create_repo(name, private=True if private else None, exist_ok=True)
            if branch:
                self.api.create_branch(name, branch=branch, exist_ok=True)
            info = self.api.upload_folder(
                repo_id=name,
                folder_path=folder,
                allow_patterns=list(PACKAGE_FILES),
                revision=branch,
                commit_message=message or f"Upload the {folder.name} model package",
            )
        except Exception as exc:
            if self._unreachable(exc):
                raise ModelDownloadError(
                    f"cannot reach the Hugging Face Hub at {self.constants.ENDPOINT} "
                    f"({self._short(exc)}); check the network (or HF_ENDPOINT)"
                ) from exc
            if isinstance(exc, self.errors.HfHubHTTPError) and self._status(exc) in (401, 403):
                raise ModelAccessError(
                    f"the Hub refused to write to {name} (HTTP {self._status(exc)}): set HF_TOKEN "
                    "to a token with write access to it (or log in with `hf auth login`)"
                ) from exc
            raise self._translate(exc, branch or DEFAULT_REVISION) from exc
        return PushResult(repo_id=name, commit=info.oid, url=info.commit_url or str(url))

    # ------------------------------------------------------------------ errors

    def _unreachable(self, exc: BaseException) -> bool:
        """The Hub did not answer (network, timeout, offline mode) or answered 5xx: try the cache."""
        if isinstance(exc, self.transport_errors):
            return True
        return isinstance(exc, self.errors.HfHubHTTPError) and (self._status(exc) or 0) >= 500

    @staticmethod
    def _status(exc: Any) -> int | None:
        response = getattr(exc, "response", None)
        return getattr(response, "status_code", None)

    def _short(self, exc: BaseException) -> str:
        """``Type: first line`` of an exception, secrets removed, short enough for one log line."""
        text = str(exc).strip().splitlines()
        first = next((line for line in text if line.strip()), "")
        detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        detail = _scrub(detail, self.secrets)
        return detail if len(detail) <= 200 else detail[:197] + "..."

    def _translate(self, exc: BaseException, revision: str) -> ModelPackageError:
        """One actionable line for an error the Hub answered with."""
        e, name, endpoint = self.errors, self.repo_id, self.constants.ENDPOINT
        if isinstance(exc, e.GatedRepoError):
            return ModelAccessError(
                f"{name} is a gated model: accept its terms on {endpoint}/{name} while logged in, "
                "then set HF_TOKEN to a token of that account"
            )
        if isinstance(exc, e.RepositoryNotFoundError):
            if self.has_token:
                return ModelNotFoundError(
                    f"no model repo {name} on the Hub ({endpoint}) that HF_TOKEN can read: check "
                    "MODEL_REPO_ID, and that the token is valid and has access to the repo"
                )
            return ModelNotFoundError(
                f"no folder {name!r} on this machine and no public model repo {name} on the Hub "
                f"({endpoint}): check MODEL_REPO_ID; if the repo is private, set HF_TOKEN"
            )
        if isinstance(exc, e.RevisionNotFoundError):
            return ModelNotFoundError(
                f"{name} has no revision {revision!r}: set MODEL_REVISION to a branch, tag or commit "
                "of that repo (or leave it empty for main)"
            )
        if isinstance(exc, e.RemoteEntryNotFoundError):
            return ModelNotFoundError(
                f"a file of {name}@{revision} listed by the Hub could not be downloaded "
                f"({self._short(exc)}); {_NEEDS}"
            )
        if isinstance(exc, e.DisabledRepoError):
            return ModelAccessError(f"{name} has been disabled on the Hub; choose another MODEL_REPO_ID")
        status = self._status(exc)
        if status in (401, 403):
            return ModelAccessError(
                f"the Hub refused access to {name} (HTTP {status}): "
                "check that HF_TOKEN is valid and can read the repo"
            )
        if isinstance(exc, e.HFValidationError):
            return ModelNotFoundError(f"{name!r} is not a valid Hugging Face Hub repo id: {self._short(exc)}")
        if isinstance(exc, OSError | ValueError) or status is not None:
            where = f"HTTP {status}" if status else self._short(exc)
            return ModelDownloadError(f"the Hub could not serve {name}@{revision} ({where}): try again later")
        return ModelDownloadError(f"fetching {name}@{revision} failed: {self._short(exc)}")


def _print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vqa_engine.loading.hub",
        description="Publish a model package to the Hugging Face Hub, or fetch one.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    push_cmd = commands.add_parser("push", help="validate a package folder and upload it to a Hub repo")
    push_cmd.add_argument("folder", type=Path, help="the package folder (e.g. models/easy-vqa-film)")
    push_cmd.add_argument("--repo", required=True, help="ORG/NAME on the Hub (created if missing)")
    push_cmd.add_argument("--private", action="store_true", help="create the repo as private")
    push_cmd.add_argument("--branch", "--revision", dest="branch", help="branch to commit to (default main)")
    push_cmd.add_argument("--message", help="commit message")
    get_cmd = commands.add_parser("download", help="download a Hub model into the cache; print its folder")
    get_cmd.add_argument("repo", help="ORG/NAME on the Hub, or a local folder")
    get_cmd.add_argument("--revision", help="branch, tag or commit (default main)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m vqa_engine.loading.hub``: publish a package, or pre-fill the cache with one."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING").upper(),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    token = os.environ.get("HF_TOKEN") or None  # None: huggingface_hub's saved login, if any
    try:
        if args.command == "push":
            result = push(
                args.folder,
                args.repo,
                private=args.private,
                branch=args.branch,
                message=args.message,
                token=token,
            )
            print(f"pushed {args.folder} to {result.repo_id} at commit {result.commit}\n{result.url}")
        else:
            folder, source = resolve_model(args.repo, revision=args.revision, token=token)
            cached = " (from the cache)" if source.from_cache else ""
            print(f"{source.repo_id} {source.revision or '(local folder)'}{cached}\n{folder}")
    except ModelPackageError as exc:
        _print_error(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
