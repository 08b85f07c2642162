"""Settings: environment variables, then ``.env``, then ``config/*.toml``, then the defaults."""

from config.settings import (
    AskSettings,
    Settings,
    SettingsError,
    check_writable,
    env_files_read,
    load_settings,
)
from vqa_engine.options import DEFAULT_MODEL_DIR

__all__ = [
    "DEFAULT_MODEL_DIR",
    "AskSettings",
    "Settings",
    "SettingsError",
    "check_writable",
    "env_files_read",
    "load_settings",
]
