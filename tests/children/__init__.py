"""Programs the tests run as child processes (``python -m tests.children.NAME``): where a test
needs a fresh interpreter (what an import pulls in) or settings read at import (huggingface_hub's)."""
