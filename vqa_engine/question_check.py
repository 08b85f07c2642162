"""Does a question use words and a form the model learned? Torch-free; pure functions of text.

Two checks, both from what the package recorded about its training questions:

- **Unknown words.** Content words that are not in the vocabulary are named ("animal", "dog");
  words that carry no content ("please", "this", "it", ...: ``FUNCTION_WORDS``) are not held
  against a question. A question with no known word at all ("asdf qwer", "🤔🤔") is flagged too.
- **Answer type.** ``question_forms.json`` records, for each question form seen in training (the
  question's words with every answer word replaced by ``<answer>``: "is there a <answer> shape"),
  how often each answer was the right one. An answer the question's form never had is flagged:
  a shape for "is the shape red?". A form never seen falls back to the forms sharing its first two
  words, then its first word; failing those (and for packages without the file), to one built-in
  rule: a question opening with an auxiliary verb ("is", "does", "can", ...) wants yes or no,
  when the model has those answers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vqa_engine.errors import ModelPackageError
from vqa_engine.vocab import PAD, UNK, tokenize

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
        answer_words = _single_word_answers(answer_list)
        forms: dict[tuple[str, ...], FormRecord] = {}
        for question, answer in zip(questions, answers, strict=True):
            record = forms.setdefault(question_form(tokenize(question), answer_words), FormRecord())
            record.answers[answer] += 1
            if not record.example:
                record.example = question
        return cls(forms)

    def expected_answers(self, words: Sequence[str], answer_list: Sequence[str]) -> frozenset[str] | None:
        """Answers this question's form was trained to give (None: nothing known about it)."""
        form = question_form(words, _single_word_answers(answer_list))
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


def _single_word_answers(answer_list: Sequence[str]) -> frozenset[str]:
    return frozenset(a for a in answer_list if len(tokenize(a)) == 1 and tokenize(a)[0] == a)


class QuestionChecker:
    """The question checks of one model: its vocabulary, its answers, and its recorded forms."""

    def __init__(
        self, vocabulary: Iterable[str], answers: Sequence[str], forms: QuestionForms | None
    ) -> None:
        self.known = frozenset(vocabulary) - {PAD, UNK}
        self.answers = list(answers)
        self.forms = forms

    def unknown_words(self, question: str) -> list[str]:
        """Content words the model never learned, in order, each once."""
        seen: dict[str, None] = {}
        for word in tokenize(question):
            if word not in self.known and word not in FUNCTION_WORDS:
                seen.setdefault(word, None)
        return list(seen)

    def knows_any_word(self, question: str) -> bool:
        return any(word in self.known for word in tokenize(question))

    def expected_answers(self, question: str) -> frozenset[str] | None:
        """The answers the question's form allows (None: no rule applies, anything goes)."""
        words = tokenize(question)
        if self.forms is not None:
            expected = self.forms.expected_answers(words, self.answers)
            if expected is not None:
                return expected
        if words and words[0] in YES_NO_OPENERS and set(self.answers) >= YES_NO_ANSWERS:
            return YES_NO_ANSWERS
        return None

    def answer_fits(self, question: str, answer: str) -> bool:
        expected = self.expected_answers(question)
        return expected is None or answer in expected
