"""Resolve a local model folder and print whether it is one, and whether torch or huggingface_hub
was imported on the way (neither may be).

    python -m tests.children.resolve_local MODEL_FOLDER
"""

from __future__ import annotations

import sys

from vqa_engine.loading.hub import resolve_model


def main() -> None:
    folder, _ = resolve_model(sys.argv[1])
    print(folder.is_dir(), "torch" in sys.modules, "huggingface_hub" in sys.modules)


if __name__ == "__main__":
    main()
