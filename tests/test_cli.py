"""``python main.py ask`` end to end with the bundled model, as a user runs it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

import main
from tests.conftest import BUNDLED_MODEL, ROOT, run_main
from vqa_engine.tools.easyvqa import image_path

EXAMPLES = ROOT / "examples"

# (test image id, question, answer) from the official easy-VQA test split
KNOWN = [
    (6, "what shape is in the image?", "circle"),
    (6, "what color is the shape?", "blue"),
    (12, "what is the color of the shape?", "red"),
    (12, "what shape does the image contain?", "triangle"),
    (35, "what shape is present?", "rectangle"),
    (35, "is there a green shape in the image?", "yes"),
    (39, "does the image not contain a yellow shape?", "no"),
    (39, "is there a circle?", "yes"),
]


def test_text_answer_from_a_child_process() -> None:
    result = run_main("ask", str(EXAMPLES / "blue_circle.png"), "what shape is in the image?")
    assert result.returncode == 0, result.stderr.decode()
    first, *rest = result.stdout.decode().splitlines()
    assert first.startswith("circle (") and first.endswith("% confident)")
    assert "100%" not in first  # a softmax is never certain, whatever the float says
    for line in rest:  # the next candidates worth naming (1% or more), by the bots' percent rules
        assert line.startswith("next: ") and "<1%" not in line
    assert b"Traceback" not in result.stderr


def test_json_answer_from_a_child_process() -> None:
    result = run_main(
        "ask", str(EXAMPLES / "red_triangle.png"), "what color is the shape?", "--json", "--top-k", "4"
    )
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert set(data) == {
        "answer",
        "confidence",
        "top_k",
        "abstain",
        "reason",
        "unknown_words",
        "familiarity",
    }
    assert data["answer"] == "red"
    assert (data["abstain"], data["reason"], data["unknown_words"]) == (False, None, [])
    assert 0.001 < data["familiarity"] <= 1
    assert data["confidence"] > 0.9
    assert len(data["top_k"]) == 4
    assert data["top_k"][0] == {"answer": "red", "confidence": data["confidence"]}
    confidences = [c["confidence"] for c in data["top_k"]]
    assert confidences == sorted(confidences, reverse=True)


def test_pdf_exits_2_with_a_message_from_a_child_process(tmp_path: Path) -> None:
    pdf = tmp_path / "report.png"  # the name lies; the bytes tell
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n")
    result = run_main("ask", str(pdf), "what color is the shape?")
    assert result.returncode == 2
    assert result.stdout == b""
    assert "that file is a PDF, not an image" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize(("image_id", "question", "answer"), KNOWN)
def test_known_answers(capsys: pytest.CaptureFixture[str], image_id: int, question: str, answer: str) -> None:
    assert main.main(["ask", str(image_path("test", image_id)), question, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == answer


def test_question_normalisation_reaches_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main.main(["ask", str(EXAMPLES / "green_rectangle.png"), "  What COLOUR is the shape??  ", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["answer"] == "green"


def test_image_from_stdin() -> None:
    data = (EXAMPLES / "yellow_circle.png").read_bytes()
    result = run_main("ask", "-", "what color is the shape?", "--json", stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["answer"] == "yellow"


def test_jpeg_photo_of_a_shape_is_answered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A large, non-square JPEG (as a phone sends) is padded and downscaled, not distorted."""
    shape = (
        Image.open(EXAMPLES / "blue_circle.png").convert("RGB").resize((640, 640), Image.Resampling.NEAREST)
    )
    photo = Image.new("RGB", (1280, 640), "white")
    photo.paste(shape, (320, 0))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90)
    (tmp_path / "photo.jpg").write_bytes(buf.getvalue())
    assert main.main(["ask", str(tmp_path / "photo.jpg"), "what shape is in the image?", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "circle"


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "please ask a question"),
        ("   ", "please ask a question"),
        ("x" * 501, "too long (501 characters; the limit is 500)"),
        ("what\x1b[31m color?", "control character"),
    ],
)
def test_bad_questions_exit_2(capsys: pytest.CaptureFixture[str], question: str, message: str) -> None:
    assert main.main(["ask", str(EXAMPLES / "blue_circle.png"), question]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the image is empty"),
        (b"PK\x03\x04" + b"\x00" * 40, "that file is a ZIP archive"),
        (b"hello, this is a text file\n", "that file is a text file, not an image"),
    ],
)
def test_bad_images_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    (tmp_path / "file").write_bytes(content)
    assert main.main(["ask", str(tmp_path / "file"), "what shape?"]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_and_folder_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["ask", str(tmp_path / "nope.png"), "what shape?"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main.main(["ask", str(tmp_path), "what shape?"]) == 2
    assert "is a folder, not an image" in capsys.readouterr().err


def test_oversized_file_is_refused_without_reading_it_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_IMAGE_BYTES", "1000")
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * 5000)
    assert main.main(["ask", str(big), "what shape?"]) == 2
    assert "image larger than 1 KB" in capsys.readouterr().err


def test_model_repo_id_points_at_another_package(
    small_package: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_REPO_ID", str(small_package))
    assert (
        main.main(["ask", str(EXAMPLES / "blue_circle.png"), "what shape?", "--json", "--top-k", "99"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert len(data["top_k"]) == 8  # clamped to the package's answer space


def test_unknown_model_folder_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_REPO_ID", "/no/such/model")
    assert main.main(["ask", str(EXAMPLES / "blue_circle.png"), "what shape?"]) == 1
    assert "MODEL_REPO_ID='/no/such/model' is not a model folder" in capsys.readouterr().err


def test_top_k_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["ask", str(EXAMPLES / "blue_circle.png"), "what shape?", "--top-k", "0"])
    assert exc.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_no_token_exits_non_zero_naming_the_variables() -> None:
    result = run_main()
    assert result.returncode == 2
    assert "TELEGRAM_TOKEN" in result.stderr.decode() and "DISCORD_TOKEN" in result.stderr.decode()


def test_bundled_model_exists() -> None:
    assert (BUNDLED_MODEL / "model.safetensors").stat().st_size <= 1_000_000


def test_a_picture_unlike_the_training_pictures_is_answered_honestly() -> None:
    cat = ROOT / "benchmarks" / "ood" / "photos" / "chelsea.jpg"
    result = run_main("ask", str(cat), "what animal is this?")
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode().strip()
    assert text.startswith(
        "This picture doesn't look like the ones I was trained on (one coloured shape on a plain "
        "background), so I can't answer that reliably. My best guess: "
    )
    assert "confident" not in text


def test_help_says_what_each_form_does(capsys: pytest.CaptureFixture[str]) -> None:
    """``main.py --help``: every command in a line, and what running it without one starts."""
    with pytest.raises(SystemExit) as exited:
        main.main(["--help"])
    shown = capsys.readouterr().out
    assert exited.value.code == 0
    for command in ("ask", "web", "webhook", "deploy"):
        assert f"\n    {command} " in shown
    assert "without a command: the service" in shown
    assert "TELEGRAM_TOKEN" in shown and "PORT" in shown
