"""The entry a Hugging Face Space runs (``app_file`` in the README's front matter).

The web app on the Space's port (7860), and every chat bot whose token is set as a Space secret
(``TELEGRAM_TOKEN``, ``DISCORD_TOKEN``), in one process on one engine: ``python main.py`` with
``PORT`` set. Behind the Space's proxy the client address is the one that proxy appended to
``X-Forwarded-For`` (the rightmost entry: ``PROXY_HOPS=1``), never what the client wrote there.
"""

from __future__ import annotations

import os
import sys

from main import main

if __name__ == "__main__":
    os.environ.setdefault("PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))
    os.environ.setdefault("WEB_HOST", os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "*")  # every request comes through the Space's proxy
    os.environ.setdefault("PROXY_HOPS", "1")  # which appends the address it saw
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.exit(main([]))
