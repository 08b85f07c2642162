"""``python main.py deploy space OWNER/NAME``: this project as a Gradio Space on the Hugging Face Hub.

One command creates the Space (or updates the one of that name) so that it runs what this checkout
runs: every check that needs no network comes first (the name, the secrets' values, the token, the
model package loading), so a refusal costs nothing and sends nothing. Then the Space is created with
its hardware, secrets and variables in the same request (or an existing one gets them), and its
files are replaced in one commit: exactly the files a Space needs, a README.md whose front matter
is generated from the project's, and deletions of what is no longer part of the project.
huggingface_hub does the upload (binary files through the Hub's LFS/Xet storage, unchanged files not
sent again). Secret values and the token are never printed, logged or quoted in an error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from huggingface_hub import (
    HfApi,
    SpaceHardware,
    SpaceInfo,
    get_token,
)
from huggingface_hub import errors as hub_errors

from config.settings import ENV_FILES, ROOT
from deploy.errors import EXIT_USAGE, DeployError
from deploy.hub_errors import http_status, hub_step, redacted_logs
from deploy.space_files import gradio_pin, operations, project_files, space_readme
from vqa_engine.errors import ModelPackageError
from vqa_engine.loading.model_spec import parse_model_spec
from vqa_engine.options import ModelOptions

#: the variables every deploy sets from the MODEL_* settings (``ModelPlan``)
MODEL_VARIABLES = ("MODEL_REPO_ID", "MODEL_REVISION")
#: where the repo ids are: a user or organisation, then the Space's name
_NAME_PART = re.compile(r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_TOKEN = (
    "no Hugging Face token: set HF_TOKEN (a token with write access, from "
    "https://huggingface.co/settings/tokens) in the environment or .env, or run `hf auth login`"
)


@dataclass(frozen=True)
class SpaceRequest:
    """What the command line asks for."""

    repo_id: str
    private: bool = False
    hardware: str | None = None
    secrets: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelPlan:
    """The model the Space serves: a folder of this project, uploaded with it at the same relative
    path, or (``folder`` None) the Hub model(s) ``MODEL_REPO_ID`` names, which the Space downloads."""

    model_repo_id: str  # MODEL_REPO_ID on the Space
    folder: Path | None = None
    revision: str | None = None  # MODEL_REVISION, for Hub models

    @property
    def variables(self) -> dict[str, str]:
        """Always set, so the Space never serves a model an earlier deploy (or a hand) chose."""
        if self.folder is not None:
            return {"MODEL_REPO_ID": self.model_repo_id}
        return {"MODEL_REPO_ID": self.model_repo_id, "MODEL_REVISION": self.revision or "main"}


@dataclass
class Deployment:
    """What was done, for the summary the command prints (names only, never values)."""

    repo_id: str
    url: str
    created: bool
    private: bool
    visibility_changed: bool
    hardware: str
    secrets: list[str]
    variables: list[str]
    model: ModelPlan
    files: int = 0
    size: int = 0
    removed: list[str] = field(default_factory=list)
    commit: str | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """The lines printed on success; the Space's address last."""
        visibility = "private" if self.private else "public"
        if not self.created:
            visibility += " (made private)" if self.visibility_changed else " (unchanged)"
        where = "uploaded with the project" if self.model.folder else "downloaded by the Space from the Hub"
        files = f"{self.files} files, {self.size:,} bytes"
        if self.commit is None:
            files += ": the Space already had every one of them, no commit made"
        else:
            files += f" in commit {self.commit[:7]} (files the Space already had are not sent again)"
        return [
            f"{'created' if self.created else 'updated'} the Space {self.repo_id}",
            f"visibility: {visibility}",
            f"hardware: {self.hardware}",
            f"secrets set: {', '.join(self.secrets) or 'none'}",
            f"variables set: {', '.join(self.variables)}",
            f"model: {self.model.model_repo_id} ({where})",
            f"files: {files}",
            f"removed from the Space: {', '.join(self.removed) or 'nothing'}",
            *self.notes,
            self.url,
        ]


# -- the command line's values, checked before anything is sent -----------------------------------


def check_repo_id(repo_id: str) -> str:
    """``OWNER/NAME`` as the Hub accepts it, so a typo is refused here and not by a half-done deploy."""
    parts = repo_id.split("/")
    legal = len(parts) == 2 and all(_NAME_PART.fullmatch(part) for part in parts)
    if not legal or "--" in repo_id or ".." in repo_id:
        raise DeployError(
            f"{repo_id!r} is not a Space id: write OWNER/NAME (your user or organisation, a slash, the "
            "Space's name: letters, digits, '-', '_' and '.', at most 96 characters, starting and "
            "ending with a letter or digit)",
            EXIT_USAGE,
        )
    return repo_id


def check_hardware(flavor: str | None) -> SpaceHardware | None:
    """One of the flavors this huggingface_hub knows, so a typo never reaches a paid request."""
    if flavor is None:
        return None
    try:
        return SpaceHardware(flavor)
    except ValueError:
        known = ", ".join(h.value for h in SpaceHardware)
        raise DeployError(f"unknown hardware {flavor!r}: one of {known}", EXIT_USAGE) from None


def env_file_values(files: Sequence[Path] = ENV_FILES) -> dict[str, str]:
    """The keys the project's ``.env`` files set, as the settings read them (a later file wins)."""
    values: dict[str, str] = {}
    for path in files:
        if path.is_file():
            values |= {k: v for k, v in dotenv_values(path).items() if v is not None}
    return values


def read_values(
    names: Iterable[str], option: str, environ: Mapping[str, str], env_file: Mapping[str, str]
) -> dict[str, str]:
    """Each name's value from the environment, else from .env. A name without one is refused by
    name (``option`` is ``--secret`` or ``--variable``); a value is never quoted."""
    values: dict[str, str] = {}
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise DeployError(
                f"{option} {name!r}: a name is letters, digits and '_', not starting with a digit",
                EXIT_USAGE,
            )
        value = environ.get(name) or env_file.get(name)
        if not value:
            raise DeployError(
                f"{option} {name}: {name} has no value in the environment or in .env: set it there, or "
                f"leave out {option} {name}",
                EXIT_USAGE,
            )
        values[name] = value
    return values


def find_token(configured: str | None) -> str:
    """HF_TOKEN (environment or .env), else the login ``hf auth login`` saved."""
    token = configured or get_token()
    if not token:
        raise DeployError(NO_TOKEN, EXIT_USAGE)
    return token


# -- what the Space gets ---------------------------------------------------------------------------


def plan_model(options: ModelOptions, root: Path = ROOT) -> ModelPlan:
    """The model the Space will serve, checked: a local package must load and be in the project."""
    try:
        members = parse_model_spec(options.model_repo_id, default_revision=options.model_revision)
    except ModelPackageError as exc:
        raise DeployError(str(exc), EXIT_USAGE) from exc
    local = [m for m in members if Path(m.repo_id).expanduser().is_dir()]
    if not local:
        return ModelPlan(options.model_repo_id, revision=options.model_revision)
    if len(members) > 1:
        raise DeployError(
            f"MODEL_REPO_ID={options.model_repo_id!r} is an ensemble with local folders in it: a Space "
            "is deployed with one model folder; publish the members to the Hub "
            "(python -m vqa_engine.loading.hub push) and list their repo ids",
            EXIT_USAGE,
        )
    folder = Path(local[0].repo_id).expanduser().resolve()
    check_loads(folder, options)  # first: a broken package is the graver news
    return ModelPlan(project_path(folder, root), folder)


def check_loads(folder: Path, options: ModelOptions) -> None:
    """Load the package as the Space will (on the CPU here), so a broken one is never uploaded."""
    from vqa_engine.backends.folder import open_folder  # imports torch: only once the cheap checks passed

    try:
        open_folder(folder, options=options.model_copy(update={"device": "cpu"}))
    except ModelPackageError as exc:
        raise DeployError(
            f"the model package at {folder} does not load: {exc}; nothing was uploaded"
        ) from exc


def project_path(folder: Path, root: Path) -> str:
    """``folder`` relative to the project, as the Space will find it (its files go there)."""
    try:
        return folder.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise DeployError(
            f"the model package at {folder} is outside the project ({root}): a Space gets the project's "
            "files, at the same paths. Move the package into the project (e.g. models/NAME) and point "
            "MODEL_REPO_ID at it, or publish it (python -m vqa_engine.loading.hub push) and set "
            "MODEL_REPO_ID to its repo id",
            EXIT_USAGE,
        ) from None


# -- the Hub ---------------------------------------------------------------------------------------


def build_api(token: str, endpoint: str | None = None) -> HfApi:
    """A client for the Hub at ``endpoint`` (default: HF_ENDPOINT, else huggingface.co)."""
    return HfApi(endpoint=endpoint, token=token)


def existing_space(api: HfApi, repo_id: str) -> SpaceInfo | None:
    """The Space of that name, None when there is none; refused when it is not a Gradio one."""
    try:
        info = api.space_info(repo_id)
    except hub_errors.RepositoryNotFoundError:
        return None
    if info.sdk != "gradio":
        kind = f"a {info.sdk} Space" if info.sdk else "a Space without an SDK"
        raise DeployError(f"{repo_id} is {kind}, not a Gradio one: pick another name; nothing was uploaded")
    return info


@dataclass(frozen=True)
class SpaceSettings:
    """A Space's settings as asked: set on creation, or on the existing Space."""

    private: bool
    hardware: SpaceHardware | None
    secrets: Mapping[str, str]
    variables: Mapping[str, str]


def create_space(api: HfApi, repo_id: str, settings: SpaceSettings) -> SpaceInfo:
    """A new Gradio Space that starts with its hardware, secrets and variables already set."""
    try:
        api.create_repo(
            repo_id,
            repo_type="space",
            space_sdk="gradio",
            private=True if settings.private else None,  # None: the owner's default visibility
            space_hardware=settings.hardware,
            space_secrets=[{"key": k, "value": v} for k, v in settings.secrets.items()] or None,
            space_variables=[{"key": k, "value": v} for k, v in settings.variables.items()] or None,
        )
    except hub_errors.HfHubHTTPError as exc:
        if http_status(exc) != 409:
            raise
        raise DeployError(
            f"the name {repo_id} is taken on the Hub by something this token cannot use as a Space "
            "(HTTP 409): pick another name; nothing was uploaded"
        ) from exc
    try:
        return api.space_info(repo_id)
    except hub_errors.RepositoryNotFoundError as exc:
        raise DeployError(
            f"{repo_id} was created but the Hub does not show it as a Space: pick another name; "
            "nothing was uploaded"
        ) from exc


def update_space(api: HfApi, info: SpaceInfo, settings: SpaceSettings) -> bool:
    """Bring an existing Space's settings to what was asked (before its files, so the build the
    commit starts sees them); True when it was made private. Without --private the visibility
    stays as it is: a deploy never makes a private Space public."""
    for key, value in settings.secrets.items():
        api.add_space_secret(info.id, key, value)
    for key, value in settings.variables.items():
        api.add_space_variable(info.id, key, value)
    if settings.hardware is not None:
        api.request_space_hardware(info.id, settings.hardware)
    if settings.private and not info.private:
        api.update_repo_settings(info.id, private=True, repo_type="space")
        return True
    return False


def current_hardware(info: SpaceInfo) -> str:
    runtime = info.runtime
    flavor = (runtime.requested_hardware or runtime.hardware) if runtime is not None else None
    return f"{flavor} (unchanged)" if flavor else "unchanged"


# -- the command -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """Everything the Space gets, checked on this machine before the Hub is asked anything."""

    repo_id: str
    private: bool
    hardware: SpaceHardware | None
    secrets: dict[str, str] = field(repr=False)
    variables: dict[str, str]
    model: ModelPlan
    files: dict[str, Path]  # path on the Space -> local file (the README aside)
    readme: str
    notes: list[str]
    token: str = field(repr=False)

    @property
    def size(self) -> int:
        return sum(path.stat().st_size for path in self.files.values()) + len(self.readme.encode())


def prepare(
    request: SpaceRequest,
    *,
    model: ModelOptions,
    token: str | None,
    root: Path = ROOT,
    environ: Mapping[str, str] = os.environ,
) -> Release:
    """Every local check, cheapest first (loading the model last); raises ``DeployError`` before
    any request to the Hub."""
    repo_id = check_repo_id(request.repo_id)
    hardware = check_hardware(request.hardware)
    env_file = env_file_values()
    secrets = read_values(request.secrets, "--secret", environ, env_file)
    asked = [name for name in request.variables if name not in MODEL_VARIABLES]
    variables = read_values(asked, "--variable", environ, env_file)
    both = sorted(set(secrets) & set(request.variables))
    if both:
        raise DeployError(f"{', '.join(both)}: a name is a secret or a variable, not both", EXIT_USAGE)
    token = find_token(token)
    readme, notes = space_readme(root, repo_id, gradio_pin(root / "requirements.txt"))
    plan = plan_model(model, root)
    files = project_files(root, plan.folder)
    variables |= plan.variables
    return Release(repo_id, request.private, hardware, secrets, variables, plan, files, readme, notes, token)


def deploy_space(
    request: SpaceRequest,
    *,
    model: ModelOptions,
    token: str | None,
    api: HfApi | None = None,
    root: Path = ROOT,
    environ: Mapping[str, str] = os.environ,
) -> Deployment:
    """Create or update the Space ``request`` names so that it runs this project (``token``: the
    HF_TOKEN setting; ``api``: a client of another Hub, for tests). Raises ``DeployError``."""
    release = prepare(request, model=model, token=token, root=root, environ=environ)
    api = api or build_api(release.token)
    hidden = [release.token, *release.secrets.values()]
    with redacted_logs(hidden):
        return publish(api, release, hidden)


def publish(api: HfApi, release: Release, hidden: Sequence[str]) -> Deployment:
    """The Hub's part: the Space's settings, then its files in one commit."""
    repo_id, hardware = release.repo_id, release.hardware
    settings = SpaceSettings(release.private, hardware, release.secrets, release.variables)
    untouched = "nothing was uploaded"
    with hub_step("looking the Space up", api, repo_id, hidden, untouched):
        info = existing_space(api, repo_id)
    created, made_private = info is None, False
    if info is None:
        with hub_step("creating the Space", api, repo_id, hidden, untouched):
            info = create_space(api, repo_id, settings)
        shown_hardware = hardware.value if hardware else "cpu-basic (the Hub's default)"
    else:
        with hub_step("setting the Space's secrets, variables and hardware", api, repo_id, hidden, untouched):
            made_private = update_space(api, info, settings)
        shown_hardware = hardware.value if hardware else current_hardware(info)
    ops, removed = operations(release.files, release.readme, [s.rfilename for s in info.siblings or []])
    with hub_step("uploading the files", api, repo_id, hidden, "the Space's files are unchanged"):
        commit = api.create_commit(
            repo_id,
            ops,
            repo_type="space",
            commit_message="Deploy vqa-chat",
            commit_description=f"python main.py deploy space {repo_id}",
            parent_commit=info.sha,
        )
    return Deployment(
        repo_id=repo_id,
        url=f"{api.endpoint}/spaces/{repo_id}",
        created=created,
        private=release.private or bool(info.private),
        visibility_changed=made_private,
        hardware=shown_hardware,
        secrets=sorted(release.secrets),
        variables=sorted(release.variables),
        model=release.model,
        files=len(release.files) + 1,
        size=release.size,
        removed=removed,
        commit=commit.oid if commit.oid != info.sha else None,
        notes=release.notes,
    )


def run(request: SpaceRequest, *, model: ModelOptions, token: str | None) -> int:
    """``main.py deploy space``: deploy, then print what was done, or one ``error:`` line."""
    try:
        done = deploy_space(request, model=model, token=token)
    except DeployError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(done.summary()))
    return 0
