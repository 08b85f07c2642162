"""What a Space gets: exactly the project's files it runs, a README.md generated from the
project's front matter, and the commit's operations (added files, and deletions of what is no
longer part of the project)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, RepoCard, SpaceCardData
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deploy.errors import DeployError

#: the project's files a Space runs; app.py is its ``app_file``
TOP_FILES = ("app.py", "main.py", "requirements.txt", "pre-requirements.txt", "LICENSE", ".gitattributes")
REQUIRED_FILES = ("app.py", "main.py", "requirements.txt", "README.md")
#: whole folders the Space needs (the model package's folder is added to them)
FOLDERS = ("bots", "config", "service", "vqa_engine", "examples")
#: the secrets that start the chat bots on the Space, named in its README
BOT_SECRETS = ("TELEGRAM_TOKEN", "DISCORD_TOKEN")
#: the Hub refuses a longer ``short_description`` in a Space's front matter
SHORT_DESCRIPTION_MAX = 60


def is_excluded(relative: Path) -> bool:
    """Caches and local settings (a .env holds secrets) never leave the machine."""
    return relative.suffix in (".pyc", ".pyo") or any(
        part == "__pycache__" or part.startswith(".env") for part in relative.parts
    )


def project_files(root: Path, model_folder: Path | None) -> dict[str, Path]:
    """Path on the Space -> local file: the entry points, the code, the examples, the model."""
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            raise DeployError(f"{root / name} is missing: the Space cannot be built without it")
    files = {name: root / name for name in TOP_FILES if (root / name).is_file()}
    folders = [root / name for name in FOLDERS] + ([model_folder] if model_folder is not None else [])
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not is_excluded(relative):
                files[relative.as_posix()] = path
    return files


def gradio_pin(requirements: Path) -> str:
    """The ``gradio==`` version requirements.txt pins: the Space's ``sdk_version`` (the Hub installs
    that gradio, then requirements.txt, and the two must agree)."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if canonicalize_name(requirement.name) == "gradio" and len(pins) == 1:
            return pins[0]
    raise DeployError(
        f"{requirements} pins no gradio version (gradio==X.Y.Z): the Space's sdk_version is read from it"
    )


def space_readme(root: Path, repo_id: str, gradio: str) -> tuple[str, list[str]]:
    """The Space's README.md, and notes for the user.

    Its front matter is the project README's (emoji, colours, licence, description...), with what
    the Space must have set here: its title, the gradio SDK at the pinned version, app.py.
    """
    try:
        project = RepoCard((root / "README.md").read_text(encoding="utf-8")).data.to_dict()
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read the front matter of {root / 'README.md'}: {exc}") from exc
    name = repo_id.split("/")[1]
    meta = {
        "python_version": "3.11",
        **project,
        "title": name,
        "sdk": "gradio",
        "sdk_version": gradio,
        "app_file": "app.py",
    }
    notes = []
    description = str(meta.get("short_description") or "")
    if len(description) > SHORT_DESCRIPTION_MAX:
        meta["short_description"] = shortened(description, SHORT_DESCRIPTION_MAX)
        notes.append(
            f"note: README.md's short_description is {len(description)} characters and a Space's may "
            f"have {SHORT_DESCRIPTION_MAX}: the Space shows it shortened"
        )
    front = SpaceCardData(**meta).to_yaml()
    return f"---\n{front}\n---\n\n{readme_body(name, str(project.get('title') or 'vqa-chat'))}", notes


def shortened(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, an ellipsis included."""
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut}…"


def readme_body(name: str, project: str) -> str:
    """What the Space is, and which secrets and variables start what."""
    telegram, discord = BOT_SECRETS
    return (
        f"# {name}\n\n"
        f"{project}: ask a question about a picture and get the answer, with how sure the model is, in "
        "the web app here and through its HTTP API.\n\n"
        "The same process runs the chat bots whose tokens are set as this Space's secrets "
        "(Settings → Variables and secrets):\n\n"
        f"- `{telegram}`: the Telegram bot (a token from @BotFather);\n"
        f"- `{discord}`: the Discord bot (a token from the Discord developer portal).\n\n"
        "The variable `MODEL_REPO_ID` names the model that answers: a folder of this Space (as "
        "deployed) or a model repo on the Hub.\n\n"
        "This Space is deployed with `python main.py deploy space OWNER/NAME` from the project: this "
        "file is generated; change the project and deploy again.\n"
    )


def operations(
    files: Mapping[str, Path], readme: str, remote: Collection[str]
) -> tuple[list[CommitOperationAdd | CommitOperationDelete], list[str]]:
    """One commit's operations: every file added (the client skips those the Space has), and the
    Space's files that are no longer part of the project deleted (its .gitattributes kept unless
    the project sends one). Also the deleted paths."""
    adds = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=local) for path, local in files.items()]
    adds.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode()))
    keep = {*files, "README.md", ".gitattributes"}
    removed = sorted(path for path in remote if path not in keep)
    deletes = [CommitOperationDelete(path_in_repo=path) for path in removed]
    return [*adds, *deletes], removed
