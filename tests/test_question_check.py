"""Question checks: unknown words are named, function words are not held against a question, and an
answer of the wrong type for the question's form is caught (with and without recorded forms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_MODEL
from vqa_engine.checks.questions import QuestionChecker, QuestionForms
from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.vocab import Vocabulary

ANSWERS = ["circle", "triangle", "red", "blue", "yes", "no"]
TRAINING = [
    ("is there a red shape?", "yes"),
    ("is there a blue shape?", "no"),
    ("is there a circle?", "no"),
    ("what color is the shape?", "red"),
    ("what color is the shape?", "blue"),
    ("what shape is in the image?", "circle"),
    ("what shape is in the image?", "triangle"),
]


@pytest.fixture
def checker() -> QuestionChecker:
    questions = [q for q, _ in TRAINING]
    forms = QuestionForms.build(questions, [a for _, a in TRAINING], ANSWERS)
    return QuestionChecker(Vocabulary.build(questions).tokens, ANSWERS, forms)


@pytest.mark.parametrize(
    ("question", "unknown"),
    [
        ("what animal is this?", ["animal"]),  # "this" carries no content
        ("Is it a DOG?", ["dog"]),
        ("how many shapes are there?", ["how", "many", "shapes"]),
        ("asdf qwer asdf", ["asdf", "qwer"]),  # each once, in order
        ("please, what colour is the shape?", []),  # British spelling and "please" are fine
        ("🤔🤔", []),
    ],
)
def test_unknown_content_words_are_named(checker: QuestionChecker, question: str, unknown: list[str]) -> None:
    assert checker.unknown_words(question) == unknown


def test_a_question_without_any_known_word_is_noticed(checker: QuestionChecker) -> None:
    assert not checker.read("🤔🤔").knows_any_word
    assert not checker.read("please?").knows_any_word
    assert checker.read("is there a red shape?").knows_any_word


@pytest.mark.parametrize(
    ("question", "answer", "fits"),
    [
        ("is there a red shape?", "yes", True),
        ("is there a red shape?", "circle", False),
        ("is there a triangle?", "no", True),  # the same form: "is there a <answer>"
        ("what color is the shape?", "blue", True),
        ("what color is the shape?", "yes", False),
        ("is the shape red?", "triangle", False),  # unseen form: its opening "is" wants yes/no
        ("is the shape red?", "no", True),
        ("what shape is it?", "triangle", True),  # unseen form, opening "what shape"
        ("what shape is it?", "red", False),
    ],
)
def test_answer_type_follows_the_trained_forms(
    checker: QuestionChecker, question: str, answer: str, fits: bool
) -> None:
    assert checker.answer_fits(question, answer) is fits


def test_without_recorded_forms_the_yes_no_rules_apply() -> None:
    checker = QuestionChecker(["is", "the", "shape", "red", "what"], ANSWERS, None)
    assert checker.answer_fits("is the shape red?", "yes")
    assert not checker.answer_fits("is the shape red?", "circle")  # an auxiliary first: yes or no
    assert not checker.answer_fits("the shape is what?", "no")  # a question word: anything but
    assert checker.answer_fits("the shape is what?", "circle")
    assert checker.answer_fits("shape?", "no")  # nothing to go on: anything goes
    no_yes_no = QuestionChecker(["is"], ["circle", "square"], None)
    assert no_yes_no.answer_fits("is it round?", "circle")  # a model without yes/no is not judged


def test_forms_round_trip_through_json(tmp_path: Path, checker: QuestionChecker) -> None:
    assert checker.forms is not None
    path = tmp_path / "question_forms.json"
    checker.forms.save(path)
    loaded = QuestionForms.load(path)
    assert loaded.forms == checker.forms.forms
    data = json.loads(path.read_text())
    assert data["forms"][0] == {
        "form": "is there a <answer> shape",
        "answers": {"yes": 1, "no": 1},
        "example": "is there a red shape?",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"forms": {}}', "must hold"),
        ('{"format_version": 99, "forms": []}', "newer than this version"),
        ('{"forms": [{"form": "x"}]}', "malformed"),
    ],
)
def test_broken_forms_files_are_refused_with_a_reason(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "question_forms.json"
    path.write_text(content)
    with pytest.raises(ModelPackageError, match=message):
        QuestionForms.load(path)


def test_the_bundled_model_knows_its_24_training_forms() -> None:
    forms = QuestionForms.load(BUNDLED_MODEL / "question_forms.json")
    assert len(forms.forms) == 24
    by_form = {" ".join(k): set(v.answers) for k, v in forms.forms.items()}
    assert by_form["is there a <answer> shape"] == {"yes", "no"}
    assert by_form["what shape is in the image"] == {"circle", "rectangle", "triangle"}
    assert len(by_form["what color is the shape"]) == 8
