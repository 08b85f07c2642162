"""Import the engine's machinery and print whether torch came with it (it must not).

python -m tests.children.engine_imports
"""

from __future__ import annotations

import importlib
import sys

MODULES = (
    "vqa_engine.serving.engine",
    "vqa_engine.serving.batch_queue",
    "vqa_engine.serving.prediction_cache",
    "vqa_engine.serving.engine_stats",
    "vqa_engine.loading.model_spec",
    "vqa_engine.options",
    "vqa_engine.loading.loader",
)


def main() -> None:
    for name in MODULES:
        importlib.import_module(name)
    print("torch" in sys.modules)


if __name__ == "__main__":
    main()
