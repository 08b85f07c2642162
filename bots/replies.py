"""Every sentence a chat user reads, as constants and pure functions: one place to read and change.

(Messages about unusable images and questions come from ``vqa_engine``'s errors, which are
written for users too; ``sentence()`` gives them a chat reply's capital and full stop.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vqa_engine import Prediction
from vqa_engine.formats import SUPPORTED_TEXT, describe_mime
from vqa_engine.serving.model_facts import ModelFacts, QuestionKind

if TYPE_CHECKING:
    from vqa_engine.serving.engine import EngineStats

#: below this confidence the answer is worded as a guess
UNSURE_BELOW = 0.5
#: candidates below this are not listed under the answer (a row of empty bars says nothing)
LIST_ABOVE = 0.01
BAR_WIDTH = 10

HELP = {
    "telegram": (
        "{model}\n"
        "Send me a photo with a question as its caption, e.g. “{example}”, "
        "and I'll answer with how sure I am.\n"
        "• Reply to a photo with a question to ask about that photo.\n"
        "• Send a photo without a caption, then ask as many questions as you like about it.\n"
        "• In groups, mention me or use /ask in the caption.\n"
        "• /about: what I know and how well. /new: forget the last photo.\n"
        "I read {formats} images up to {max_mb} MB."
    ),
    "discord": (
        "{model}\n"
        "Send me an image with a question, e.g. “{example}”, and I'll answer "
        "with how sure I am.\n"
        "• In a server, mention me in the message with the image, or use /ask.\n"
        "• Reply to a message with an image and mention me to ask about that image.\n"
        "• Send an image without a question, then ask as many questions as you like about it.\n"
        "• /about: what I know and how well. /new: forget the last image.\n"
        "I read {formats} images up to {max_mb} MB."
    ),
}
#: when the model's package names no example question
GENERIC_EXAMPLE = "what is in the picture?"
#: why an answer is only a guess, as a user reads it ({guess} is the best answer)
NOT_RELIABLE = "so I can't answer that reliably. My best guess: {guess}."
UNFAMILIAR_IMAGE = "This picture doesn't look like the ones I was trained on{what}, " + NOT_RELIABLE
UNKNOWN_WORDS = "I don't know the {words}, " + NOT_RELIABLE
NO_KNOWN_WORDS = "I don't understand that question: none of its words are ones I learned, " + NOT_RELIABLE
ANSWER_TYPE = "I wasn't trained to answer that kind of question, " + NOT_RELIABLE
#: the last line of an answer the second model gave (``ESCALATE_TO``), after the first abstained
ESCALATED = "(answered by the larger model)"
#: command menus: Telegram's "/" list and Discord's slash commands
COMMANDS = {
    "telegram": {
        "ask": "ask about a photo (reply to it, or put /ask in its caption)",
        "help": "how to use this bot",
        "about": "what the model knows, and how well",
        "new": "forget the last photo and start afresh",
        "start": "what this bot does",
    },
    "discord": {
        "ask": "Ask a question about an image",
        "help": "How to use this bot",
        "about": "What the model knows, and how well",
        "new": "Forget the last image and start afresh",
        "health": "Is the bot healthy? (admins)",
        "stats": "What has the bot been doing? (admins)",
    },
}
#: /new: the last image and the conversation about it are forgotten
NEW_CONVERSATION = "Starting afresh: send a picture."
ASK_OPTIONS = {"image": "the picture", "question": "e.g. what color is the shape?"}
ASK_WHAT = "Got the picture. What would you like to know about it? (e.g. “what shape is it?”)"
ASK_WHAT_GROUP = {
    "telegram": (
        "Got the picture. Reply to this message with your question (e.g. “what shape is it?”), "
        "or mention me in your question."
    ),
    "discord": "Got the picture. Mention me with your question (e.g. “@me what shape is it?”).",
}
NO_IMAGE = (
    "Send me a photo first (with your question as its caption), or reply to a photo with your question."
)
NEED_QUESTION = (
    "What would you like to know about this picture? Add a question, e.g. “what color is the shape?”"
)
HIDDEN_IMAGE = (
    "I can't see the image in that message (this bot doesn't have Discord's message-content "
    "permission). Mention me in the message with the image, or use /ask."
)
NOT_ADMIN = "Sorry, that command is for the bot's admins."
QUEUE_FULL = (
    "I already have {waiting} of your questions waiting; I'll answer those first. "
    "Please send this one again after their answers."
)
DOWNLOAD_FAILED = "I couldn't download that image; please send it again."
BUTTON_LABELS = {"chart": "📊 Chart", "good": "👍", "bad": "👎"}
BUTTON_EXPIRED = "That answer is too old for me to remember; please ask again."
# the web app and the HTTP API (bots.web)
WEB_INTRO = (
    "Upload or paste a picture, ask a question about it, and get the answer with how sure the "
    "model is. The bundled model knows simple pictures of one coloured shape (circle, rectangle, "
    "triangle): ask about its shape or colour, or whether a shape is there."
)
WEB_NO_IMAGE = f"Add an image to ask about (a {SUPPORTED_TEXT} file)."
API_KEY_NEEDED = "This API needs a key: send it as “Authorization: Bearer KEY”."
API_KEY_WRONG = "That API key is not valid."
API_NOT_A_FORM = (
    "Send the image and the question as multipart/form-data: the fields image, question and, "
    "optionally, top_k."
)
API_BAD_FORM = "I couldn't read that form; send the image and the question as multipart/form-data."
API_METHOD = "Send the question with POST, as multipart/form-data (image, question, top_k)."
#: a request body that did not arrive in time (the server stops waiting: BodyGuard's timeout)
REQUEST_TIMEOUT = "The request took too long to arrive; please send it again."
#: a request the web app cannot use (an unknown event, inputs of the wrong number or kind)
WEB_BAD_REQUEST = "That request is not one this page sends; please reload the page and try again."
#: an upload the web app did not store itself (a path it was handed instead of a file)
WEB_NOT_AN_UPLOAD = "Please upload the image again: I only read images uploaded on this page."
ERROR = "Sorry, something went wrong on my side while answering. Please try again in a moment."


def help_text(platform: str, *, max_image_bytes: int, facts: ModelFacts | None = None) -> str:
    """/start and /help: what the model knows (from its package), then how to ask."""
    template = HELP.get(platform, HELP["telegram"])
    return template.format(
        model=model_line(facts),
        example=example_question(facts),
        formats=SUPPORTED_TEXT,
        max_mb=round(max_image_bytes / 2**20),
    )


def example_question(facts: ModelFacts | None) -> str:
    """A question the model was trained on, preferring an open one ("what …?") to a yes/no one."""
    examples = [e for k in _by_answers(facts) for e in k.examples]
    return next((e for e in examples if e.startswith("what")), examples[0] if examples else GENERIC_EXAMPLE)


def _by_answers(facts: ModelFacts | None) -> list[QuestionKind]:
    """Question kinds, those with the most answers (the most telling) first."""
    return sorted(facts.question_kinds, key=lambda k: -len(k.answers)) if facts is not None else []


def model_line(facts: ModelFacts | None) -> str:
    """One sentence on what the model knows, so a bot serving another model says the right thing."""
    if facts is None:
        return "I answer questions about pictures."
    if facts.trained_on:
        line = f"I answer questions about pictures of {facts.trained_on}"
    else:
        line = f"I answer questions about pictures with the model {facts.name}"
    examples = [k.examples[0] for k in _by_answers(facts)[:3] if k.examples]
    if examples:
        line += ", like " + join_words([f"“{q}”" for q in examples], "or")
    return line + "."


def about_text(facts: ModelFacts) -> str:
    """/about: the model, what it was trained on, the questions and answers it knows, how well."""
    lines = [f"About the model: {facts.name}"]
    if facts.trained_on:
        data = f" ({', '.join(facts.datasets)})" if facts.datasets else ""
        lines.append(f"Trained on pictures of {facts.trained_on}{data}.")
    if facts.question_kinds:
        lines.append("It answers questions like:")
        for kind in _by_answers(facts):
            answers = kind.answers if len(kind.answers) <= 8 else (*kind.answers[:7], "…")
            lines.append(f"• “{kind.examples[0]}” → {', '.join(answers)}" if kind.examples else "")
    elif facts.answers:
        shown = facts.answers if len(facts.answers) <= 12 else (*facts.answers[:12], "…")
        lines.append(f"It knows {len(facts.answers):,} answers: {', '.join(shown)}.")
    if facts.vocabulary:
        lines.append(
            f"It knows {facts.vocabulary:,} words; questions with others get an honest “I don't know”."
        )
    if facts.accuracy is not None:
        acc = facts.accuracy
        dataset = f" of {acc.dataset}'s {acc.split} split" if acc.dataset else f" of its {acc.split} split"
        lines.append(f"Measured: {acc.accuracy:.2%} right on the {acc.questions:,} questions{dataset}.")
    if facts.image_check == "familiarity":
        lines.append(
            "When a picture doesn't look like its training pictures, or a question uses words it "
            "never learned, it says so and gives its answer only as a guess."
        )
    else:
        lines.append("It says when it isn't sure (under 50%) and gives that answer only as a guess.")
    return "\n".join(line for line in lines if line)


def join_words(words: list[str], last: str = "and") -> str:
    """a, b and c."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def abstain_notice(prediction: Prediction, *, trained_on: str | None) -> str | None:
    """Why an answer can only be a guess, as a sentence with the guess (None: it is an answer,
    or only a low-confidence guess, which ``format_prediction`` words itself)."""
    if not prediction.abstain:
        return None
    guess = prediction.answer
    if prediction.reason == "unfamiliar_image":
        return UNFAMILIAR_IMAGE.format(what=f" ({trained_on})" if trained_on else "", guess=guess)
    if prediction.reason == "unknown_words":
        if not prediction.unknown_words:
            return NO_KNOWN_WORDS.format(guess=guess)
        quoted = [f"‘{w}’" for w in prediction.unknown_words]
        words = f"word {quoted[0]}" if len(quoted) == 1 else f"words {join_words(quoted)}"
        return UNKNOWN_WORDS.format(words=words, guess=guess)
    if prediction.reason == "answer_type":
        return ANSWER_TYPE.format(guess=guess)
    return None


def ask_what(platform: str, *, private: bool) -> str:
    """An image without a question. In a group a plain follow-up is not addressed to the bot,
    so say how to ask."""
    return ASK_WHAT if private else ASK_WHAT_GROUP.get(platform, ASK_WHAT)


def bar(confidence: float, width: int = BAR_WIDTH) -> str:
    filled = int(max(0.0, min(1.0, confidence)) * width + 0.5)  # half up, not to even
    return "█" * filled + "░" * (width - filled)


def percent(confidence: float) -> str:
    """``98%``; never rounds a non-zero value to 0%, and never says 100%: a model's probability
    that reads 1.0 is a float that ran out of digits, not certainty."""
    value = confidence * 100
    if 0 < value < 1:
        return "<1%"
    if value > 99:
        return f"{value:.1f}%" if value < 99.95 else ">99.9%"
    return f"{value:.0f}%"


def format_prediction(
    prediction: Prediction, *, others: int = 2, trained_on: str | None = None, sure: bool = True
) -> str:
    """The answer, how sure, and the next candidates worth naming, as short bars; when the
    model abstains, why, with the answer only as a guess (never a bare confident answer).
    ``sure=False`` (a sentence a model wrote, whose confidence is no chance of being right):
    the answer alone, or worded as a guess, and no percentage."""
    notice = abstain_notice(prediction, trained_on=trained_on)
    if notice is not None:
        return notice
    unsure = prediction.confidence < UNSURE_BELOW or prediction.reason == "low_confidence"
    if not sure:
        return f"Not sure — maybe: {prediction.answer}" if unsure else prediction.answer
    if unsure:
        head = f"Not sure — maybe {prediction.answer} ({percent(prediction.confidence)})"
    else:
        head = f"{prediction.answer} — {percent(prediction.confidence)} sure"
    rest = [c for c in prediction.top_k[1 : 1 + others] if c.confidence >= LIST_ABOVE]
    if not rest:
        return head
    width = max(len(c.answer) for c in rest)
    lines = [f"{c.answer:<{width}}  {bar(c.confidence)} {percent(c.confidence)}" for c in rest]
    return head + "\n" + "\n".join(lines)


def format_cli(prediction: Prediction, *, trained_on: str | None = None, sure: bool = True) -> str:
    """``main.py ask``: the answer and the next candidates on one line, by the same percent rules;
    when the model abstains, why, with the answer only as a guess. ``sure=False``: no
    percentage (a written sentence; ``--json`` still has its confidence)."""
    notice = abstain_notice(prediction, trained_on=trained_on)
    if notice is not None:
        return notice
    unsure = prediction.reason == "low_confidence"
    if not sure:
        return f"not sure — maybe: {prediction.answer}" if unsure else prediction.answer
    if unsure:
        return f"not sure — maybe {prediction.answer} ({percent(prediction.confidence)})"
    lines = [f"{prediction.answer} ({percent(prediction.confidence)} confident)"]
    others = [c for c in prediction.top_k[1:] if c.confidence >= LIST_ABOVE]
    if others:
        lines.append("next: " + ", ".join(f"{c.answer} {percent(c.confidence)}" for c in others))
    return "\n".join(lines)


def numbered(texts: list[str]) -> str:
    """One reply for several images (an album): a numbered line each."""
    return "\n".join(f"{n}. " + text.replace("\n", "\n    ") for n, text in enumerate(texts, start=1))


def rate_limited(retry_after_s: int, rate: str) -> str:
    wait = f"{retry_after_s} seconds" if retry_after_s != 1 else "1 second"
    return f"You're asking faster than I can keep up ({rate}). Please try again in {wait}."


def queue_full(waiting: int) -> str:
    return QUEUE_FULL.format(waiting=waiting)


def too_large(size: int, limit: int) -> str:
    return f"That image is larger than {human_bytes(limit)} ({human_bytes(size)}); please send a smaller one."


def not_an_image(mime_type: str) -> str:
    """Names what the file is when we know; never repeats the declared type (a client wrote it)."""
    what = describe_mime(mime_type)
    if what is None:
        image = mime_type.strip().lower().startswith("image/")
        what = "in an image format I can't read" if image else "not an image I can read"
        return f"That file is {what}; please send a {SUPPORTED_TEXT} image."
    return f"That file is {what}, not an image I can read; please send a {SUPPORTED_TEXT} image."


def chart_caption(question: str) -> str:
    return clip(f"Top answers for “{question}”", 200)


def thanks(button: str, *, changed: bool) -> str:
    """After a 👍/👎: every vote counts towards how good the answers are (``/stats``)."""
    mark = BUTTON_LABELS.get(button, "")
    return f"Changed to {mark}, thanks." if changed else f"Thanks for the {mark}!"


def request_too_large(limit: int) -> str:
    """A request body (not an image upload) over its route's cap."""
    return f"That request body is larger than {human_bytes(limit)}, the most this address accepts."


def upload_too_large(limit: int) -> str:
    """An HTTP upload refused before it was read (its declared or streamed size is over the cap)."""
    return f"That upload is larger than {human_bytes(limit)}; please send a smaller image."


def bad_top_k(maximum: int) -> str:
    return f"top_k must be a whole number from 1 to {maximum}."


def sentence(message: str) -> str:
    """Engine messages are lower-case clauses; a chat reply starts with a capital and ends with a stop."""
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def human_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def clip(text: str, limit: int) -> str:
    """Fit a platform's message length limit."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- /health and /stats, for admins ------------------------------------------------------------


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _first_model_lines(stats: EngineStats) -> list[str]:
    """Which model answers and how: one line, or one per member of an ensemble."""
    revision = f" @ {stats.revision}" if stats.revision else ""
    if not stats.members:
        return [
            f"model: {stats.model_id}{revision}",
            f"backend: {_runs(stats.backend, stats.answers, stats.dtype, stats.quantize)}",
        ]
    lines = [f"model: ensemble of {len(stats.members)}"]
    for member in stats.members:
        rev = f" @ {member.revision}" if member.revision else ""
        runs = _runs(member.backend, member.answers, member.dtype, member.quantize)
        lines.append(f"  {member.model_id}{rev} (weight {member.weight:.2f}): {runs}")
    return lines


def _model_lines(stats: EngineStats) -> list[str]:
    """Which model answers and how; with ``ESCALATE_TO``, the second model after it."""
    second = stats.escalates_to
    if second is None:
        return _first_model_lines(stats)
    rev = f" @ {second.revision}" if second.revision else ""
    if second.members:
        runs = f"ensemble of {len(second.members)}"
    else:
        runs = _runs(second.backend, second.answers, second.dtype, second.quantize)
    return [*_first_model_lines(stats), f"escalates to: {second.model_id}{rev} ({runs})"]


def _runs(backend: str, answers: int | None, dtype: str, quantize: str) -> str:
    space = "generated answers" if answers is None else f"{answers:,} answers"
    int8 = ", int8 on" if quantize == "int8" else ""
    return f"{backend or 'unknown'}, {space}, {dtype or '?'}{int8}"


def format_health(stats: EngineStats, *, platforms: list[str], details: Sequence[str] = ()) -> str:
    """Is it up, which model exactly, and is it keeping up; ``details``: lines from the other
    parts of the process (shared state, Discord shards)."""
    status = "OK" if stats.state == "running" else stats.state.upper()
    return "\n".join(
        [
            f"{status} — up {duration(stats.uptime_s)}",
            *_model_lines(stats),
            f"device: {stats.device}",
            *([stats.answer_checks] if stats.answer_checks else []),
            f"platforms: {', '.join(platforms) or 'none'}",
            *details,
            f"queue: {stats.queue_depth} waiting, {stats.in_flight} in flight",
            f"latency: p50 {_ms(stats.latency_p50_ms)}, p95 {_ms(stats.latency_p95_ms)}",
            f"memory: {stats.memory_rss_mb:.0f} MB",
        ]
    )


def format_stats(
    stats: EngineStats,
    outcomes: Counter[tuple[str, str]],
    *,
    remembered_images: int,
    ratings: dict[tuple[str, str], tuple[int, int]] | None = None,
) -> str:
    """What happened since start-up: chat outcomes per platform, and the engine's counters."""
    lines = ["chat requests since start-up:"]
    platforms = sorted({platform for platform, _ in outcomes})
    if not platforms:
        lines.append("  none yet")
    for platform in platforms:
        mine = {outcome: n for (p, outcome), n in outcomes.items() if p == platform}
        total = sum(mine.values())
        parts = ", ".join(f"{outcome} {n}" for outcome, n in sorted(mine.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {platform}: {total} ({parts})")
    requests = stats.requests
    cache_total = stats.cache_hits + stats.cache_misses
    hit_rate = f"{stats.cache_hits / cache_total:.0%}" if cache_total else "–"
    lines += [
        "engine:",
        "  " + ", ".join(f"{outcome} {n}" for outcome, n in requests.items() if n or outcome == "answered"),
        f"  batches {stats.batches}, mean size {stats.mean_batch_size:.1f}, largest {stats.largest_batch}",
        f"  latency p50 {_ms(stats.latency_p50_ms)}, p95 {_ms(stats.latency_p95_ms)}",
        f"  cache hits {stats.cache_hits} ({hit_rate})"
        + (f", {stats.shared_cache_hits} from other processes" if stats.shared_cache_hits else ""),
        f"images remembered for follow-ups: {remembered_images}",
        "answers rated good (👍 of 👍+👎):",
    ]
    if not ratings:
        lines.append("  no votes yet")
    for (platform, revision), (good, votes) in sorted((ratings or {}).items()):
        lines.append(f"  {platform}, model {revision}: {good / votes:.0%} of {votes} votes")
    return "\n".join(lines)
