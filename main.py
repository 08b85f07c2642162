"""vqa-chat: answer questions about images, from the command line or in Telegram and Discord.

python main.py ask IMAGE QUESTION [--json] [--top-k N]
python main.py                       # run every chat platform whose token is set
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from config import Settings, SettingsError, load_settings
from vqa_engine import Prediction  # torch-free; heavy modules are imported by the commands that use them

EXIT_USAGE = 2  # unusable input, as the DESIGN.md contract says
EXIT_FAILURE = 1

log = logging.getLogger("vqa_chat")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def read_image_arg(path: str, max_bytes: int) -> bytes:
    """The image bytes named on the command line (``-`` for stdin), never more than the cap + 1."""
    if path == "-":
        return sys.stdin.buffer.read(max_bytes + 1)
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if file.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image")
    with file.open("rb") as f:
        return f.read(max_bytes + 1)  # the decoder reports "larger than" from the extra byte


def format_answer(prediction: Prediction) -> str:
    """Human-readable answer with its confidence and the next candidates."""
    lines = [f"{prediction.answer} ({prediction.confidence:.1%} confident)"]
    others = prediction.top_k[1:]
    if others:
        lines.append("next: " + ", ".join(f"{c.answer} {c.confidence:.1%}" for c in others))
    return "\n".join(lines)


def ask(settings: Settings, image_path: str, question: str, *, as_json: bool, top_k: int) -> int:
    """``main.py ask``: load the configured model, answer once, print."""
    from vqa_engine import ModelPackageError, VQAInputError
    from vqa_engine.hub import load_model
    from vqa_engine.predictor import Predictor
    from vqa_engine.preprocess import ImageLimits, clean_question

    try:
        question = clean_question(question)
        image = read_image_arg(image_path, settings.max_image_bytes)
    except (VQAInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    try:
        package = load_model(
            settings.model_repo_id, revision=settings.model_revision, token=token, device=settings.device
        )
    except ModelPackageError as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    limits = ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    try:
        prediction = Predictor(package, limits=limits).predict(image, question, top_k=top_k)
    except VQAInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(prediction.to_dict()) if as_json else format_answer(prediction))
    return 0


def run_bots(settings: Settings) -> int:
    """``main.py``: every platform whose token is set, in one event loop, sharing one engine."""
    if settings.telegram_token is None and settings.discord_token is None:
        print(
            "error: no chat platform is configured; set TELEGRAM_TOKEN and/or DISCORD_TOKEN "
            "(in the environment or in .env). To try the model without a bot: "
            "python main.py ask IMAGE QUESTION",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print("error: this version of vqa-chat has no chat adapters yet", file=sys.stderr)
    return EXIT_FAILURE


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    ask_cmd = commands.add_parser("ask", help="answer one question about one image")
    ask_cmd.add_argument("image", help="image file (PNG, JPEG, WebP, GIF, BMP), or - for stdin")
    ask_cmd.add_argument("question", help='e.g. "what color is the shape?"')
    ask_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    ask_cmd.add_argument("--top-k", type=positive_int, default=3, help="candidates to show (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings.log_level)
    if args.command == "ask":
        return ask(settings, args.image, args.question, as_json=args.json, top_k=args.top_k)
    return run_bots(settings)


if __name__ == "__main__":
    sys.exit(main())
