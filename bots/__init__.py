"""Everything about chat, nothing about torch: the platform-free core and the Telegram and Discord adapters."""
