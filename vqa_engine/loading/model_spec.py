"""What ``MODEL_REPO_ID`` names: one model, or an ensemble written ``ID[@REVISION][:WEIGHT],...``.

Torch-free: the settings check the syntax at start-up without loading anything.

Each member is a local folder or a Hub repo id, optionally pinned to a revision (``@v2``,
``@<commit>``) and weighted (``:0.7``; default 1; weights are normalised to sum to 1). A folder
whose name happens to contain ``@`` or ``:`` is taken as is when it exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vqa_engine.errors import ModelNotFoundError


@dataclass(frozen=True)
class MemberSpec:
    """One model of ``MODEL_REPO_ID``."""

    repo_id: str  # a Hub repo id or a local folder, as written
    revision: str | None = None
    weight: float = 1.0

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.repo_id}{revision}"


def _is_folder(text: str) -> bool:
    return Path(text).expanduser().is_dir()


def parse_model_spec(
    text: str, *, default_revision: str | None = None, is_folder: Callable[[str], bool] = _is_folder
) -> list[MemberSpec]:
    """The members ``text`` lists, in order. ``default_revision`` (``MODEL_REVISION``) applies to
    every Hub member that names no revision of its own.

    Raises ``ModelNotFoundError`` naming the entry that cannot be read.
    """
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        raise ModelNotFoundError("MODEL_REPO_ID is empty: set it to a model folder or a Hub repo id")
    members = []
    for entry in entries:
        if not entry:
            raise ModelNotFoundError(f"MODEL_REPO_ID={text!r} has an empty entry (two commas in a row?)")
        members.append(_parse_member(entry, default_revision, is_folder))
    return members


def _parse_member(entry: str, default_revision: str | None, is_folder: Callable[[str], bool]) -> MemberSpec:
    if is_folder(entry):
        return MemberSpec(entry)
    name, weight = entry, 1.0
    head, sep, tail = entry.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            raise ModelNotFoundError(
                f"MODEL_REPO_ID entry {entry!r}: the weight after ':' must be a positive number, not {tail!r}"
            )
        name = head
    if is_folder(name):
        return MemberSpec(name, None, weight)
    repo_id, at, revision = name.partition("@")
    if at and not revision:
        raise ModelNotFoundError(
            f"MODEL_REPO_ID entry {entry!r}: nothing after '@' (a branch, tag or commit)"
        )
    if not repo_id:
        raise ModelNotFoundError(f"MODEL_REPO_ID entry {entry!r} names no model")
    return MemberSpec(repo_id, revision or default_revision, weight)


def normalised_weights(members: list[MemberSpec]) -> list[float]:
    """Each member's share of the vote: its weight over the sum of the weights."""
    total = sum(m.weight for m in members)
    return [m.weight / total for m in members]
