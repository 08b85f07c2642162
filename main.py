"""vqa-chat: answer questions about images, from the command line, in Telegram and Discord, and on the web.

python main.py ask IMAGE QUESTION [--json] [--top-k N]
python main.py                       # every chat platform whose token is set (+ HTTP when PORT is set)
python main.py web [--host H] [--port P]   # the web app and HTTP API alone
python main.py webhook info|delete   # Telegram's webhook: what Telegram has, or remove it
python main.py deploy space OWNER/NAME [--private] [--hardware FLAVOR] [--secret NAME]... [--variable NAME]...
"""

from __future__ import annotations

import argparse
import logging
import sys

from bots.web.options import DEFAULT_PORT as DEFAULT_WEB_PORT
from bots.web.options import WebOptions
from config import AskSettings, Settings, SettingsError, env_files_read, load_settings
from config.log import setup_logging
from service.app import run_service
from service.ask import ask
from service.builders import HttpAddress
from service.exit_codes import EXIT_USAGE
from service.webhook_command import webhook
from vqa_engine.options import ModelOptions  # torch-free

#: what ``main.py --help`` says of the form that starts the service
WITHOUT_A_COMMAND = """without a command: the service. Every chat bot whose token is set (TELEGRAM_TOKEN,
DISCORD_TOKEN) runs, and with PORT (or WEB_PORT) set the web app and HTTP API run beside them,
in one process, until SIGTERM or Ctrl-C. With no token and no port it exits 2 saying so.

Settings come from the environment, then .env, then config/*.toml (docs/configuration.md)."""
log = logging.getLogger("vqa_chat")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port from 0 to 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description=__doc__.splitlines()[0],
        epilog=WITHOUT_A_COMMAND,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    ask_cmd = commands.add_parser("ask", help="answer one question about one image")
    ask_cmd.add_argument("image", help="image file (PNG, JPEG, WebP, GIF, BMP), or - for stdin")
    ask_cmd.add_argument("question", help='e.g. "what color is the shape?"')
    ask_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    ask_cmd.add_argument("--top-k", type=positive_int, default=3, help="candidates to show (default 3)")
    web_cmd = commands.add_parser("web", help="the web app and HTTP API alone (no chat bots)")
    web_cmd.add_argument("--host", help="address to listen on (default: WEB_HOST, 0.0.0.0)")
    web_cmd.add_argument(
        "--port", type=port_number, help=f"port (default: WEB_PORT, then PORT, then {DEFAULT_WEB_PORT})"
    )
    hook_cmd = commands.add_parser("webhook", help="Telegram's webhook: show what Telegram has, or delete it")
    hook_cmd.add_argument("action", choices=["info", "delete"])
    add_deploy_parser(commands)
    return parser


def add_deploy_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``deploy space OWNER/NAME ...``."""
    space_help = "create or update a Gradio Space on the Hugging Face Hub that runs this project"
    deploy_help = "publish this project: deploy space OWNER/NAME (a Hugging Face Space)"
    deploy_cmd = commands.add_parser("deploy", help=deploy_help, description=f"P{deploy_help[1:]}.")
    targets = deploy_cmd.add_subparsers(dest="target", required=True, metavar="TARGET")
    space = targets.add_parser(
        "space", help=space_help, description=f"{space_help[0].upper()}{space_help[1:]}."
    )
    space.add_argument(
        "repo_id", metavar="OWNER/NAME", help="your user or organisation, and the Space's name"
    )
    space.add_argument(
        "--private", action="store_true", help="create it private (an existing one: made private)"
    )
    space.add_argument(
        "--hardware",
        metavar="FLAVOR",
        help="e.g. cpu-basic, cpu-upgrade, t4-small (default: unchanged, or cpu-basic for a new Space)",
    )
    space.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a Space secret, its value from the environment or .env (e.g. TELEGRAM_TOKEN); repeatable",
    )
    space.add_argument(
        "--variable",
        action="append",
        default=[],
        metavar="NAME",
        help="a public Space variable, its value from the environment or .env; repeatable "
        "(MODEL_REPO_ID is always set to the model deployed)",
    )


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, read the settings the command needs, run it; the process's exit code."""
    args = build_parser().parse_args(argv)
    # ask and deploy read only the model's settings: a bad RATE_LIMIT must not stop them
    kind: type[AskSettings | Settings] = AskSettings if args.command in ("ask", "deploy") else Settings
    try:
        settings = load_settings(kind)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings.log_level, secrets=settings.secrets)
    read = ", ".join(map(str, env_files_read())) or "no .env file"
    log.debug("settings: the environment, %s, config/*.toml", read)
    if isinstance(settings, AskSettings) and args.command == "deploy":  # a Space (deploy/space.py)
        from deploy.space import SpaceRequest, run

        request = SpaceRequest(
            args.repo_id,
            private=args.private,
            hardware=args.hardware,
            secrets=tuple(args.secret),
            variables=tuple(args.variable),
        )
        token = settings.hf_token.get_secret_value() if settings.hf_token else None
        return run(request, model=settings.section(ModelOptions), token=token)
    if isinstance(settings, AskSettings):
        return ask(settings, args.image, args.question, as_json=args.json, top_k=args.top_k)
    if args.command == "webhook":
        return webhook(settings, args.action)
    web = settings.section(WebOptions)
    if args.command == "web":
        port = args.port if args.port is not None else web.http_port
        address = HttpAddress(args.host or web.web_host, DEFAULT_WEB_PORT if port is None else port)
        return run_service(settings, chat=False, http=address)
    http = HttpAddress(web.web_host, web.http_port) if web.http_port is not None else None
    return run_service(settings, http=http)


if __name__ == "__main__":
    sys.exit(main())
