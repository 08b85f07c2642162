"""What the chat side imports from the engine, used on a model folder: prints the model's
``trained_on``, the default answer risk, and whether torch was imported (it must not be).

    python -m tests.children.chat_side_imports MODEL_FOLDER
"""

from __future__ import annotations

import sys

from vqa_engine import CheckOptions, Prediction  # noqa: F401  (Prediction: as the chat side imports it)
from vqa_engine.serving.model_facts import describe


def main() -> None:
    facts = describe(sys.argv[1])
    print(facts.trained_on, CheckOptions().max_answer_risk, "torch" in sys.modules)


if __name__ == "__main__":
    main()
