"""Field types shared by the option classes of every layer (``vqa_engine``, ``bots``, ``config``).

Pydantic-only and at the bottom of the imports, so that ``bots`` and ``vqa_engine`` can use them
without importing ``config`` (which imports them).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, SecretStr


def blank_is_none(value: object) -> object:
    """A blank value means unset, so that ``TELEGRAM_TOKEN=`` (as compose.yaml writes it for a
    service that leaves Telegram to another) turns the option off instead of failing."""
    return None if isinstance(value, str) and not value.strip() else value


#: text that may be unset; blank (empty or spaces) is unset
OptionalStr = Annotated[str | None, BeforeValidator(blank_is_none)]
#: a secret that may be unset; blank is unset
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(blank_is_none)]
#: a number that may be unset; blank is unset
OptionalInt = Annotated[int | None, BeforeValidator(blank_is_none)]
