"""The prediction log: one JSON line per chat request, written off the event loop to a rotating file.

Users are identified by a salted hash only, so the log can be kept and shared without the raw
Telegram or Discord ids; with a fixed ``PREDICTION_LOG_SALT`` the same user hashes the same way
across restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import queue
import secrets
import time
from pathlib import Path

from vqa_engine import Prediction


class PredictionLog:
    """Append-only JSON lines; the file rotates at ``max_bytes`` keeping ``backups`` old files."""

    def __init__(
        self,
        path: str | Path,
        *,
        salt: str | None = None,
        max_bytes: int = 10 * 2**20,
        backups: int = 5,
    ) -> None:
        self.path = Path(path)
        self._salt = (salt or secrets.token_hex(16)).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(self._queue, file_handler)
        self._logger = logging.Logger(f"vqa_chat.predictions.{id(self)}")  # private: never propagates
        self._logger.addHandler(logging.handlers.QueueHandler(self._queue))
        self._file_handler = file_handler
        self._closed = False
        self._listener.start()

    def user_hash(self, platform: str, user_id: str) -> str:
        return hashlib.blake2b(f"{platform}:{user_id}".encode(), key=self._salt, digest_size=8).hexdigest()

    def record(
        self,
        *,
        platform: str,
        chat_type: str,
        user_id: str,
        question: str,
        outcome: str,
        latency_ms: float,
        prediction: Prediction | None = None,
        image_bytes: int | None = None,
        model_revision: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, object]:
        """Write one line (returned too, for tests and callers that want it)."""
        entry: dict[str, object] = {
            "request_id": request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "platform": platform,
            "chat_type": chat_type,
            "user": self.user_hash(platform, user_id),
            "question": question,
            "answer": prediction.answer if prediction else None,
            "confidence": prediction.confidence if prediction else None,
            "top_k": [[c.answer, c.confidence] for c in prediction.top_k] if prediction else [],
            "abstain": prediction.abstain if prediction else None,
            "reason": prediction.reason if prediction else None,
            "familiarity": prediction.familiarity if prediction else None,
            "model": prediction.model if prediction else None,
            "latency_ms": round(latency_ms, 2),
            "image_bytes": image_bytes,
            "model_revision": model_revision,
            "outcome": outcome,
        }
        self._logger.info(json.dumps(entry, ensure_ascii=False))
        return entry

    def record_vote(
        self, *, platform: str, user_id: str, request_id: str, vote: str, model_revision: str | None
    ) -> dict[str, object]:
        """A 👍 (``good``) or 👎 (``bad``) on the answer ``request_id``: one line, outcome ``feedback``."""
        entry: dict[str, object] = {
            "request_id": request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "platform": platform,
            "user": self.user_hash(platform, user_id),
            "feedback": vote,
            "model_revision": model_revision,
            "outcome": "feedback",
        }
        self._logger.info(json.dumps(entry, ensure_ascii=False))
        return entry

    def close(self) -> None:
        """Flush what is queued and close the file (again: nothing)."""
        if not self._closed:
            self._closed = True
            self._listener.stop()
            self._file_handler.close()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
