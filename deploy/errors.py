"""How ``main.py deploy space`` fails: one line for the user, and the exit status."""

from __future__ import annotations

EXIT_USAGE = 2  # unusable input: nothing was asked of the Hub
EXIT_FAILURE = 1


class DeployError(Exception):
    """A refusal or a failure: ``message`` is one line for the user (no secret in it), and
    ``exit_code`` what the command exits with (2: fix the command or the settings; 1: the rest)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
