"""Does a question use words and a form the model learned? Torch-free; pure functions of text.

Two checks, both from what the package recorded about its training questions:

- **Unknown words.** Content words that are not in the vocabulary are named ("animal", "dog");
  words that carry no content ("please", "this", "it", ...: ``FUNCTION_WORDS``) are not held
  against a question. A question with no known word at all ("asdf qwer", "🤔🤔") is flagged too.
- **Answer type.** ``question_forms.json`` records, for each question form seen in training (the
  question's words with every answer word replaced by ``<answer>``: "is there a <answer> shape"),
  how often each answer was the right one. An answer the question's form never had is flagged:
  a shape for "is the shape red?". A form never seen falls back to the forms sharing its first two
  words, then its first word; failing those (and for packages without the file), to two built-in
  rules, when the model has yes and no among its answers: a question opening with an auxiliary
  verb ("is", "does", "can", ...) wants yes or no; one with a question word ("what", "which",
  "how", ...) wants anything but.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cachetools import LRUCache

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.vocab import PAD, UNK, tokenize

FORMAT_VERSION = 1
ANSWER_SLOT = "<answer>"
#: an answer counts for a form once it was right for at least this share of the form's questions
MIN_ANSWER_SHARE = 0.001


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: English words that carry no content of their own: unknown, they are not worth a refusal
FUNCTION_WORDS = _word_set(
    """
    a an the this that these those it its itself there here
    i me my mine you your yours we us our he him his she her they them their
    is are am was were be been being do does did doing done can could will would shall should
    may might must has have had having
    of in on at to for with from by about into onto inside within over under above below near
    and or but so if then than as
    please pls plz thanks thank thx kindly
    tell say show see look just really actually exactly currently
    some any kind sort type one ones
    """
)
#: a question opening with one of these wants yes or no (the rule used without recorded forms)
YES_NO_OPENERS = _word_set(
    """
    is are am was were do does did can could will would shall should may might must has have had
    isnt arent wasnt werent dont doesnt didnt cant couldnt wont wouldnt shouldnt hasnt havent
    """
)
#: a question with one of these (and no auxiliary first) wants something other than yes or no
QUESTION_WORDS = _word_set("what which who whom whose where when why how")
YES_NO_ANSWERS = frozenset({"yes", "no"})


@dataclass
class FormRecord:
    """What training said about one question form."""

    answers: Counter[str] = field(default_factory=Counter)
    example: str = ""  # one training question of this form, as written


def question_form(words: Sequence[str], answer_words: frozenset[str]) -> tuple[str, ...]:
    """The question's words with every answer word replaced by ``<answer>``."""
    return tuple(ANSWER_SLOT if w in answer_words else w for w in words)


class QuestionForms:
    """The answers each question form was trained to give, with back-off to shorter openings."""

    def __init__(self, forms: dict[tuple[str, ...], FormRecord]) -> None:
        self.forms = forms
        self._openings: dict[tuple[str, ...], Counter[str]] = {}
        for form, record in forms.items():
            for n in (2, 1):
                if len(form) >= n:
                    self._openings.setdefault(form[:n], Counter()).update(record.answers)

    @classmethod
    def build(
        cls, questions: Iterable[str], answers: Iterable[str], answer_list: Sequence[str]
    ) -> QuestionForms:
        """Record every training (question, answer) pair."""
        answer_words = single_word_answers(answer_list)
        forms: dict[tuple[str, ...], FormRecord] = {}
        for question, answer in zip(questions, answers, strict=True):
            record = forms.setdefault(question_form(tokenize(question), answer_words), FormRecord())
            record.answers[answer] += 1
            if not record.example:
                record.example = question
        return cls(forms)

    def expected_answers(self, words: Sequence[str], answer_words: frozenset[str]) -> frozenset[str] | None:
        """Answers this question's form was trained to give (None: nothing known about it);
        ``answer_words``: the model's one-word answers (``single_word_answers``)."""
        form = question_form(words, answer_words)
        record = self.forms.get(form)
        counts = record.answers if record is not None else None
        for n in (2, 1):
            if counts is None and len(form) >= n:
                counts = self._openings.get(form[:n])
        if counts is None:
            return None
        floor = MIN_ANSWER_SHARE * sum(counts.values())
        return frozenset(a for a, c in counts.items() if c >= floor)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "format_version": FORMAT_VERSION,
            "forms": [
                {
                    "form": " ".join(form),
                    "answers": dict(record.answers.most_common()),
                    "example": record.example,
                }
                for form, record in sorted(self.forms.items(), key=lambda kv: -sum(kv[1].answers.values()))
            ],
        }

    @classmethod
    def from_json_dict(cls, data: object) -> QuestionForms:
        if not isinstance(data, dict) or not isinstance(data.get("forms"), list):
            raise ModelPackageError("question_forms.json must hold {'forms': [...]}")
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelPackageError(
                f"question_forms.json: format_version {version!r} is newer than this version of vqa-chat "
                f"understands ({FORMAT_VERSION}); upgrade vqa-chat"
            )
        forms: dict[tuple[str, ...], FormRecord] = {}
        try:
            for entry in data["forms"]:
                answers = Counter({str(a): int(c) for a, c in entry["answers"].items()})
                forms[tuple(str(entry["form"]).split())] = FormRecord(answers, str(entry.get("example", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelPackageError(f"question_forms.json: a form entry is malformed ({exc!r})") from exc
        return cls(forms)

    def save(self, path: Path) -> None:
        text = json.dumps(self.to_json_dict(), indent=1, ensure_ascii=False)
        path.write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> QuestionForms:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelPackageError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_json_dict(data)


def single_word_answers(answer_list: Sequence[str]) -> frozenset[str]:
    """The answers that are one word as the tokenizer sees it (they become ``<answer>`` in forms)."""
    return frozenset(a for a in answer_list if tokenize(a) == [a])


@dataclass(frozen=True)
class QuestionReading:
    """What the checks found in one question (independent of the picture and of the answer)."""

    unknown_words: tuple[str, ...]  # content words the model never learned, in order, each once
    knows_any_word: bool  # at least one word is in the vocabulary
    expected_answers: frozenset[str] | None  # what its form allows; None: anything goes

    def answer_fits(self, answer: str) -> bool:
        return self.expected_answers is None or answer in self.expected_answers


class QuestionChecker:
    """The question checks of one model: its vocabulary, its answers, and its recorded forms.

    Readings are remembered (bounded): chat questions repeat, and the checks run inside every batch.
    """

    def __init__(
        self,
        vocabulary: Iterable[str],
        answers: Sequence[str],
        forms: QuestionForms | None,
        *,
        cache_size: int = 1024,
    ) -> None:
        self.known = frozenset(vocabulary) - {PAD, UNK}
        self.answers = list(answers)
        self.forms = forms
        self._answer_words = single_word_answers(self.answers)
        self._has_yes_no = set(self.answers) >= YES_NO_ANSWERS
        self._readings: LRUCache[str, QuestionReading] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()  # the engine's thread and a direct caller may share a checker

    def read(self, question: str) -> QuestionReading:
        """The question's unknown words, whether it has any known word, and the answers it allows."""
        with self._lock:
            reading = self._readings.get(question)
        if reading is None:
            reading = self._read(tokenize(question))
            with self._lock:
                self._readings[question] = reading
        return reading

    def unknown_words(self, question: str) -> list[str]:
        return list(self.read(question).unknown_words)

    def answer_fits(self, question: str, answer: str) -> bool:
        return self.read(question).answer_fits(answer)

    def _read(self, words: list[str]) -> QuestionReading:
        unknown = dict.fromkeys(w for w in words if w not in self.known and w not in FUNCTION_WORDS)
        return QuestionReading(
            unknown_words=tuple(unknown),
            knows_any_word=any(w in self.known for w in words),
            expected_answers=self._expected(words),
        )

    def _expected(self, words: list[str]) -> frozenset[str] | None:
        if self.forms is not None:
            expected = self.forms.expected_answers(words, self._answer_words)
            if expected is not None:
                return expected
        if not self._has_yes_no or not words:
            return None
        if words[0] in YES_NO_OPENERS:
            return YES_NO_ANSWERS
        if QUESTION_WORDS.intersection(words):
            return frozenset(self.answers) - YES_NO_ANSWERS
        return None
