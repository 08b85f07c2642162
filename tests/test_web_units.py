"""The web front end's pure parts: its settings, the outcome → HTTP status table, ``top_k``
parsing, readiness, the batch-size histogram, and the settings reference."""

from __future__ import annotations

import pytest

from bots.events import Outcome
from bots.web.api import Probes, parse_top_k
from bots.web.asker import HTTP_STATUS, http_status
from bots.web.metrics import batch_histogram
from bots.web.options import WebOptions
from config import Settings, SettingsError, load_settings
from config.reference import default_text, env_example, table

KEY = "k" * 16


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("PORT", "WEB_PORT", "WEB_HOST", "API_KEYS", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]  # no stray .env


def test_every_question_outcome_has_an_http_status() -> None:
    for outcome in Outcome:
        if outcome.is_question:
            assert outcome in HTTP_STATUS, outcome
    assert http_status(Outcome.ANSWERED) == 200
    assert http_status(Outcome.RATE_LIMITED) == http_status(Outcome.QUEUE_FULL) == 429
    assert http_status(Outcome.BUSY) == 503
    assert http_status(Outcome.PROMPT) == 400  # never expected from the web, still a client error


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("1", 1),
        (" 10 ", 10),
        ("0", 0),
        ("11", 0),
        ("x", 0),
        ("2.5", 0),
    ],
)
def test_top_k_is_absent_or_a_whole_number_from_1_to_10(text: str | None, value: int | None) -> None:
    assert parse_top_k(text) == value


def test_http_port_is_web_port_then_port(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(Settings).http_port is None
    monkeypatch.setenv("PORT", "8080")
    assert load_settings(Settings).http_port == 8080
    monkeypatch.setenv("WEB_PORT", "9000")
    assert load_settings(Settings).http_port == 9000
    monkeypatch.setenv("WEB_PORT", "")
    assert load_settings(Settings).http_port == 8080


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("70000", "PORT: Input should be less than or equal to 65535"),
        ("abc", "PORT: Input should be a valid integer"),
    ],
)
def test_a_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("PORT", value)
    with pytest.raises(SettingsError, match=message):
        load_settings(Settings)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("just-a-key-without-a-name", "each item must be name:key"),
        (f"al ice:{KEY}", "each item must be name:key"),
        ("alice:short", "the key of 'alice' is shorter than 16 characters"),
        (f"alice:{KEY},alice:{KEY}x", "the name 'alice' is used twice"),
    ],
)
def test_bad_api_keys_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, keys: str, message: str
) -> None:
    monkeypatch.setenv("API_KEYS", keys)
    with pytest.raises(SettingsError) as exc:
        load_settings(Settings)
    assert message in str(exc.value) and "API_KEYS" in str(exc.value)
    assert "just-a-key" not in str(exc.value) and KEY not in str(exc.value)


def test_api_keys_map_keys_to_names_and_each_key_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", f" alice:{KEY} , bob:{KEY}b ,")
    settings = load_settings(Settings)
    assert settings.keys == {KEY: "alice", f"{KEY}b": "bob"}
    assert KEY in settings.secrets and f"{KEY}b" in settings.secrets  # redacted from logs one by one
    assert KEY not in repr(settings) and KEY not in str(settings.section(WebOptions))
    assert WebOptions(api_keys=" , ").keys == {}  # type: ignore[arg-type]


def test_readiness_names_what_it_waits_for() -> None:
    platforms = {"telegram": True, "discord": False}
    ready, body = Probes(model_ready=lambda: False, platforms=lambda: platforms).readiness()
    assert not ready and body["waiting_for"] == ["model", "discord"]
    ready, body = Probes(model_ready=lambda: True, platforms=dict).readiness()
    assert ready and body == {"ready": True, "model": "loaded", "platforms": {}, "waiting_for": []}


def test_the_batch_histogram_is_cumulative() -> None:
    family = batch_histogram({1: 3, 5: 2, 32: 1})
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert (buckets["1.0"], buckets["4.0"], buckets["8.0"], buckets["32.0"], buckets["+Inf"]) == (
        3,
        3,
        5,
        6,
        6,
    )
    [total] = [s.value for s in family.samples if s.name.endswith("_sum")]
    assert total == 3 + 10 + 32


def test_the_reference_lists_every_setting_once_with_its_default() -> None:
    rows = [line for line in table().splitlines() if line.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    assert "| `RATE_LIMIT` | `10/minute` |" in table()
    assert "| `MODEL_REPO_ID` | `models/easy-vqa-film` |" in table()  # not this machine's path
    assert "# WEB_QUEUE_SIZE=64" in env_example()
    assert default_text(Settings.model_fields["discord_message_content"]) == "false"
