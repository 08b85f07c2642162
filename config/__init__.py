"""Settings: environment variables, then ``.env``, then ``config/*.toml``, then the defaults."""

from config.settings import DEFAULT_MODEL_DIR, Settings, SettingsError, load_settings

__all__ = ["DEFAULT_MODEL_DIR", "Settings", "SettingsError", "load_settings"]
