"""vqa-chat: answer questions about images, from the command line or in Telegram and Discord.

python main.py ask IMAGE QUESTION [--json] [--top-k N]
python main.py                       # run every chat platform whose token is set
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from config import Settings, SettingsError, load_settings
from config.log import setup_logging
from vqa_engine import Prediction  # torch-free; heavy modules are imported by the commands that use them
from vqa_engine.options import ModelOptions  # torch-free

if TYPE_CHECKING:
    from bots.core import ChatAdapter, ChatCore

EXIT_USAGE = 2  # unusable input, as the DESIGN.md contract says
EXIT_FAILURE = 1

log = logging.getLogger("vqa_chat")


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
    from vqa_engine.loader import load_backend
    from vqa_engine.preprocess import ImageLimits, clean_question

    try:
        question = clean_question(question)
        image = read_image_arg(image_path, settings.max_image_bytes)
    except (VQAInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    try:
        backend = load_backend(model_options(settings), token=token)
    except ModelPackageError as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    limits = ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    try:
        prediction = backend.predict(image, question, top_k=top_k, limits=limits)
    except VQAInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(prediction.to_dict()) if as_json else format_answer(prediction))
    return 0


def model_options(settings: Settings) -> ModelOptions:
    """The model settings as ``vqa_engine.loader.load_backend`` takes them."""
    return ModelOptions(
        **{name: getattr(settings, name) for name in ModelOptions.model_fields}  # issue 11
    )


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
    try:
        import uvloop  # a faster event loop: the bot's own work per question drops by about a third
    except ImportError:  # not on Windows
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))


async def serve(settings: Settings) -> int:
    """Build the engine, the chat core and the adapters; run until SIGTERM/SIGINT; drain; exit 0."""
    from functools import partial

    from bots.core import ChatCore
    from bots.memory import ImageMemory
    from bots.prediction_log import PredictionLog
    from bots.ratelimit import UserLimiter
    from vqa_engine import ModelPackageError
    from vqa_engine.engine import EngineOptions, VQAEngine
    from vqa_engine.loader import load_backend
    from vqa_engine.preprocess import ImageLimits

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    loader = partial(load_backend, model_options(settings), token=token)
    engine = VQAEngine(
        loader,
        options=EngineOptions(
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            request_timeout_s=settings.request_timeout_s,
            cache_size=settings.cache_size,
            preprocess_threads=settings.preprocess_threads,
            torch_threads=settings.torch_threads,
        ),
        limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
    )
    try:
        await engine.start()
    except ModelPackageError as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    salt = settings.prediction_log_salt.get_secret_value() if settings.prediction_log_salt else None
    prediction_log = PredictionLog(settings.prediction_log, salt=salt)
    core = ChatCore(
        engine,
        limiter=UserLimiter(settings.rate_limit, max_in_flight=settings.max_in_flight_per_user),
        prediction_log=prediction_log,
        memory=ImageMemory(ttl_s=settings.follow_up_minutes * 60),
        admins=settings.admins,
        max_image_bytes=settings.max_image_bytes,
    )
    adapters = build_adapters(settings, core, min_image_side=engine.input_size)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = []
    for name, adapter in adapters:
        try:
            await adapter.start()
        except Exception as exc:  # one platform failing must not take the others down
            log.error("%s could not start: %s", name, exc)
        else:
            running.append((name, adapter))
    if running:
        log.info("serving on %s", ", ".join(name for name, _ in running))
        await stop.wait()
        log.info("stopping: answering the questions already received")
    for name, adapter in running:
        try:
            await adapter.stop()
        except Exception:
            log.exception("%s did not stop cleanly", name)
    await engine.close(drain_timeout=settings.request_timeout_s)
    prediction_log.close()
    if not running:
        print("error: no chat platform could start (see the log above)", file=sys.stderr)
        return EXIT_FAILURE
    log.info("stopped")
    return 0


def build_adapters(
    settings: Settings, core: ChatCore, *, min_image_side: int
) -> list[tuple[str, ChatAdapter]]:
    """One adapter per platform whose token is set."""
    adapters: list[tuple[str, ChatAdapter]] = []
    if settings.telegram_token is not None:
        from bots.telegram_bot import TelegramAdapter

        telegram = TelegramAdapter(
            core,
            token=settings.telegram_token.get_secret_value(),
            base_url=settings.telegram_base_url,
            base_file_url=settings.telegram_base_file_url,
            min_image_side=min_image_side,
        )
        adapters.append(("telegram", telegram))
    if settings.discord_token is not None:
        from bots.discord_bot import DiscordAdapter, point_at

        point_at(settings.discord_api_base, settings.discord_gateway_url)
        discord_adapter = DiscordAdapter(
            core,
            token=settings.discord_token.get_secret_value(),
            message_content=settings.discord_message_content,
        )
        adapters.append(("discord", discord_adapter))
    return adapters


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
    setup_logging(settings.log_level, secrets=settings.secrets)
    if args.command == "ask":
        return ask(settings, args.image, args.question, as_json=args.json, top_k=args.top_k)
    return run_bots(settings)


if __name__ == "__main__":
    sys.exit(main())
