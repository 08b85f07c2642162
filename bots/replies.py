"""Every text the bots send, as pure functions: one place to read and change what users see."""

from __future__ import annotations

from vqa_engine import Prediction

#: below this confidence the answer is worded as a guess
UNSURE_BELOW = 0.5
BAR_WIDTH = 10
MAX_REPLY_CHARS = 2000  # Discord's limit; Telegram's is 4096

HELP = (
    "Send me a photo with a question as its caption, e.g. “what color is the shape?”, "
    "and I'll answer with how sure I am.\n"
    "• Reply to a photo with a question to ask about that photo.\n"
    "• Send a photo without a caption, then ask as many questions as you like about it.\n"
    "• In groups, mention me or use /ask in the caption.\n"
    "I read PNG, JPEG, WebP, GIF and BMP images up to {max_mb} MB."
)
ASK_WHAT = "Got the picture. What would you like to know about it? (e.g. “what shape is it?”)"
ASK_WHAT_GROUP = (
    "Got the picture. Reply to this message with your question (e.g. “what shape is it?”), "
    "or mention me in your question."
)
NO_IMAGE = (
    "Send me a photo first (with your question as its caption), or reply to a photo with your question."
)
NEED_QUESTION = (
    "What would you like to know about this picture? Add a question, e.g. “what color is the shape?”"
)
NOT_ADMIN = "Sorry, that command is for the bot's admins."
IN_FLIGHT = "I'm still working on your previous questions; please wait for those answers first."
ERROR = "Sorry, something went wrong on my side while answering. Please try again in a moment."


def bar(confidence: float, width: int = BAR_WIDTH) -> str:
    filled = int(max(0.0, min(1.0, confidence)) * width + 0.5)  # half up, not to even
    return "█" * filled + "░" * (width - filled)


def percent(confidence: float) -> str:
    """``98%``; never rounds a non-zero value to 0% or a non-certain one to 100%."""
    value = confidence * 100
    if 0 < value < 1:
        return "<1%"
    if 99 < value < 100:
        return f"{value:.1f}%" if value < 99.95 else ">99.9%"
    return f"{value:.0f}%"


def format_prediction(prediction: Prediction, *, others: int = 2) -> str:
    """The answer, how sure, and the next candidates as short bars."""
    if prediction.confidence < UNSURE_BELOW:
        head = f"Not sure — maybe {prediction.answer} ({percent(prediction.confidence)})"
    else:
        head = f"{prediction.answer} — {percent(prediction.confidence)} sure"
    rest = prediction.top_k[1 : 1 + others]
    if not rest:
        return head
    width = max(len(c.answer) for c in rest)
    lines = [f"{c.answer:<{width}}  {bar(c.confidence)} {percent(c.confidence)}" for c in rest]
    return head + "\n" + "\n".join(lines)


def rate_limited(retry_after_s: int, rate: str) -> str:
    wait = f"{retry_after_s} seconds" if retry_after_s != 1 else "1 second"
    return f"You're asking faster than I can keep up ({rate}). Please try again in {wait}."


def clip(text: str, limit: int = MAX_REPLY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
