"""A failed Hub request as one line a user can act on, with no secret in it (nor in a log line
written while the Hub is asked)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import httpx2
from huggingface_hub import HfApi
from huggingface_hub import errors as hub_errors

from config.log import RedactSecrets
from deploy.errors import DeployError
from vqa_engine.loading.hub import filtered_hub_logs


def scrubbed(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def first_line(exc: BaseException, secrets: Iterable[str]) -> str:
    """``exc``'s first line, secrets removed, short enough for one line of an error."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    text = scrubbed(text, secrets)
    return text if len(text) <= 200 else text[:197] + "..."


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def explain(exc: Exception, doing: str, api: HfApi, repo_id: str, secrets: Sequence[str]) -> str:
    """One line for a failed Hub request: what was being done, what the Hub said, what to do."""
    if isinstance(exc, httpx2.TransportError | hub_errors.OfflineModeIsEnabled):
        return (
            f"cannot reach the Hugging Face Hub at {api.endpoint} while {doing} "
            f"({first_line(exc, secrets)}): check the network (or HF_ENDPOINT)"
        )
    status = http_status(exc)
    if status == 401:
        return (
            f"the Hub refused the token while {doing} (HTTP 401): set HF_TOKEN to a valid token with "
            "write access (https://huggingface.co/settings/tokens), or run `hf auth login`"
        )
    if status == 403:
        owner = repo_id.split("/")[0]
        return (
            f"the Hub refused while {doing} (HTTP 403): the token needs write access to the repos of {owner}"
        )
    if status == 412:
        return f"{repo_id} changed while {doing} (HTTP 412): run the command again"
    if isinstance(exc, hub_errors.HfHubHTTPError):
        said = exc.server_message or first_line(exc, secrets)
        return f"the Hub answered HTTP {status} while {doing}: {scrubbed(' '.join(said.split()), secrets)}"
    if isinstance(exc, ValueError):  # the README's front matter, refused by /api/validate-yaml
        said = " ".join(line.strip("- ") for line in str(exc).splitlines()[1:] if line.strip())
        return f"the Hub refused the Space's README.md while {doing}: {scrubbed(said, secrets)}"
    return f"{doing} failed: {first_line(exc, secrets)}"


@contextmanager
def hub_step(doing: str, api: HfApi, repo_id: str, secrets: Sequence[str], outcome: str) -> Iterator[None]:
    """Hub errors raised inside become a ``DeployError`` saying ``doing`` failed and ``outcome``
    (what state that leaves the Space in)."""
    try:
        yield
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(f"{explain(exc, doing, api, repo_id, secrets)}; {outcome}") from exc


@contextmanager
def redacted_logs(secrets: Sequence[str]) -> Iterator[None]:
    """While the Hub is asked, no log line (whichever library writes it) shows a secret."""
    with filtered_hub_logs(RedactSecrets(secrets)):
        yield
