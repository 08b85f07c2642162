"""Everything about chat, nothing about torch: a platform-free core, Telegram and Discord adapters."""
