"""A model on an OpenAI-compatible server answers: the real ``openai`` client against a loopback fake."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time

import pytest

from config import AskSettings, load_settings
from tests.conftest import ROOT, png_bytes, run_main
from tests.fake_openai import CHAT, FakeOpenAI
from tests.loopback import DIRECT, HELD, free_port
from vqa_engine import EngineOptions, InferenceError, ModelServerError, VQAEngine
from vqa_engine.backends.remote_chat import RemoteChatBackend, load_remote_backend
from vqa_engine.loading.loader import load_backend
from vqa_engine.options import ModelOptions

KEY = "sk-remote-key-0123456789"
PHOTO = png_bytes((0, 128, 255))


def options(fake_root: str, **overrides: object) -> ModelOptions:
    values: dict[str, object] = {
        "remote_base_url": f"{fake_root}/v1",
        "remote_model": "served-vlm",
        "remote_api_key": KEY,
        "remote_timeout_s": 5,
        "max_new_tokens": 40,
        "system_prompt": "Answer briefly.",
    }
    return ModelOptions.model_validate({**values, **overrides})


def test_the_question_and_photo_reach_the_server_and_its_answer_a_prediction() -> None:
    logprobs = [-0.1, -0.2, -0.3]
    with FakeOpenAI(key=KEY, logprobs=logprobs) as fake:
        backend = load_backend(options(fake.root))
        prediction = backend.predict(PHOTO, "what color is it?")
    assert isinstance(backend, RemoteChatBackend)
    assert prediction.answer == "An answer to: what color is it?"
    assert prediction.confidence == pytest.approx(math.exp(-0.2), abs=1e-6)
    assert not prediction.abstain
    [request] = fake.requests
    assert request.authorization == f"Bearer {KEY}"
    assert request.body["model"] == "served-vlm"
    assert request.body["max_tokens"] == 40
    assert request.body["temperature"] == 0
    assert request.body["logprobs"] is True
    assert request.body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert request.question == "what color is it?"
    assert request.image_url == "data:image/png;base64," + base64.b64encode(PHOTO).decode()


def test_without_logprobs_the_answer_is_taken_as_written_and_never_shown_as_a_percentage() -> None:
    with FakeOpenAI() as fake:
        backend = load_backend(options(fake.root, remote_api_key="", system_prompt=""))
        prediction = backend.predict(PHOTO, "what is this?")
    assert (prediction.answer, prediction.confidence, prediction.abstain) == (
        "An answer to: what is this?",
        1.0,
        False,
    )
    assert backend.info.written_answers
    [request] = fake.requests
    assert request.authorization == "Bearer none"  # the client needs some key
    assert [m["role"] for m in request.body["messages"]] == ["user"]


def test_a_batch_sends_its_questions_at_once_and_keeps_their_order() -> None:
    questions = ["first?", "second?", "third?", "fourth?"]
    with FakeOpenAI(together=len(questions)) as fake:
        backend = load_remote_backend(options(fake.root))
        inputs = [backend.preprocess(png_bytes((i * 40, 0, 0))) for i in range(len(questions))]
        predictions = backend.predict_batch(inputs, questions)
    assert [p.answer for p in predictions] == [f"An answer to: {q}" for q in questions]
    assert sorted(r.question for r in fake.requests) == sorted(questions)  # one request each


def test_a_server_error_is_retried_by_the_client() -> None:
    with FakeOpenAI() as fake:
        fake.fail_next(CHAT, status=500)
        prediction = load_remote_backend(options(fake.root)).predict(PHOTO, "what shape?")
    assert prediction.answer == "An answer to: what shape?"
    assert [c.status for c in fake.calls_of(CHAT)] == [500, 200]


def test_a_refused_connection_is_a_clear_error() -> None:
    backend = load_remote_backend(options(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ModelServerError, match="the model server did not answer; please try again") as caught:
        backend.predict(PHOTO, "what shape?")
    assert caught.value.retry_after_s == 60


def test_a_hung_server_times_out_with_a_clear_error() -> None:
    with FakeOpenAI() as fake:
        fake.hang(CHAT)
        backend = load_remote_backend(options(fake.root, remote_timeout_s=0.2))
        started = time.monotonic()
        with pytest.raises(ModelServerError, match="did not answer"):
            backend.predict(PHOTO, "what shape?")
        assert time.monotonic() - started < 10
        assert [c.status for c in fake.calls_of(CHAT)] == [HELD] * 3  # the client tried 3 times


def test_a_wrong_key_and_a_malformed_request_are_told_apart() -> None:
    with FakeOpenAI(key="another-key") as fake, pytest.raises(ModelServerError, match="not set up to answer"):
        load_remote_backend(options(fake.root)).predict(PHOTO, "what shape?")
    with FakeOpenAI() as fake:
        fake.fail_next(CHAT, status=400)
        with pytest.raises(InferenceError, match="could not answer that one") as caught:
            load_remote_backend(options(fake.root)).predict(PHOTO, "what shape?")
    assert not isinstance(caught.value, ModelServerError)


async def test_through_the_engine_every_question_ends_in_an_answer_or_the_servers_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(key=KEY, logprobs=[-0.05]) as fake:
        backend = load_remote_backend(options(fake.root))
        engine = VQAEngine(lambda: backend, options=EngineOptions(cache_size=0))
        async with engine:
            prediction = await engine.answer(PHOTO, "what is it?")
            assert prediction.answer == "An answer to: what is it?"
            fake.key = "rotated-key"  # the server no longer takes ours
            outcomes = await asyncio.gather(
                *(engine.answer(PHOTO, f"question {n}?") for n in range(3)), return_exceptions=True
            )
    assert all(isinstance(o, ModelServerError) for o in outcomes), outcomes
    assert all("model server" in str(o) for o in outcomes)
    assert "Incorrect API key" in caplog.text  # the server's reason reaches the log
    assert KEY not in caplog.text


def test_the_key_is_one_of_the_secrets_the_log_redacts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTE_BASE_URL", "http://gpu:8000/v1")
    monkeypatch.setenv("REMOTE_MODEL", "served-vlm")
    monkeypatch.setenv("REMOTE_API_KEY", KEY)
    settings = load_settings(AskSettings)
    assert KEY in settings.secrets
    assert KEY not in repr(settings)


def test_a_server_without_a_model_name_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="REMOTE_MODEL is not"):
        ModelOptions(remote_base_url="http://gpu:8000/v1")


def test_ask_answers_through_the_server_in_a_child_process() -> None:
    with FakeOpenAI(key=KEY, logprobs=[-0.5, -0.5]) as fake:
        env = {
            **DIRECT,
            "REMOTE_BASE_URL": f"{fake.root}/v1",
            "REMOTE_MODEL": "served-vlm",
            "REMOTE_API_KEY": KEY,
            "LOG_LEVEL": "DEBUG",
        }
        image = ROOT / "examples" / "blue_circle.png"
        result = run_main("ask", str(image), "what shape is in the image?", "--json", env=env)
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["answer"] == "An answer to: what shape is in the image?"
    assert data["confidence"] == pytest.approx(math.exp(-0.5), abs=1e-6)
    assert fake.requests[0].image_url.endswith(base64.b64encode(image.read_bytes()).decode())
    assert KEY.encode() not in result.stderr


def test_ask_says_when_the_server_does_not_answer() -> None:
    env = {**DIRECT, "REMOTE_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "REMOTE_MODEL": "m"}
    result = run_main("ask", str(ROOT / "examples" / "blue_circle.png"), "what shape?", env=env)
    assert result.returncode == 1
    assert b"the model server did not answer" in result.stderr
    assert b"Traceback" not in result.stderr
