"""Application logging: one stream to stderr, and no secret ever reaches it."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[REDACTED]"
#: chatty at INFO (one line per HTTP request, with the bot token in the URL)
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "httpx2",  # huggingface_hub's HTTP client: one line per Hub request
    "httpcore2",
    "telegram.ext.Updater",
    "discord.gateway",
    "discord.client",
    "uvicorn.error",  # start-up chatter; its warnings and errors still show
)


class RedactSecrets(logging.Filter):
    """Replaces every configured secret in a record's message and traceback.

    Libraries log URLs (the Telegram Bot API puts the token in every URL) and exceptions that
    quote them; redacting at the handler catches all of it, whoever logged it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        values = {s for s in secrets if s and len(s) >= 4}
        # URLs carry them percent-encoded too (a Telegram token's ":" becomes "%3A")
        values |= {quote(s, safe="") for s in values} | {quote(s) for s in values}
        self.secrets = sorted(values, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        # format now, redacted: a handler formatting later (a queue) would see the raw arguments
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redact(text)
            record.exc_info = None  # the redacted text above is what gets printed
        return True


def setup_logging(level: str, *, secrets: Iterable[str] = ()) -> None:
    """Log to stderr at ``level`` with secrets redacted (idempotent: replaces earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
