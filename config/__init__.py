"""Settings: environment variables, then ``.env``, then ``config/*.toml``, then the defaults."""

from config.settings import (
    DEFAULT_MODEL_DIR,
    AskSettings,
    Settings,
    SettingsError,
    check_writable,
    env_files_read,
    load_settings,
)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "AskSettings",
    "Settings",
    "SettingsError",
    "check_writable",
    "env_files_read",
    "load_settings",
]
