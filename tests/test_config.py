import pytest
from pydantic import ValidationError

from interview.config import (
    ConfigError,
    EventsDelivery,
    Settings,
    get_settings,
    to_async_database_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./data/spool.db", "sqlite+aiosqlite:///./data/spool.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
        ("postgresql://u:p@db:5432/spool", "postgresql+psycopg://u:p@db:5432/spool"),
        ("postgresql+psycopg2://u@db/spool", "postgresql+psycopg://u@db/spool"),
        ("postgres://u@db/spool", "postgresql+psycopg://u@db/spool"),
    ],
)
def test_database_urls_pick_async_drivers(url: str, expected: str):
    assert to_async_database_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u@db/x", "not a url"])
def test_unsupported_database_urls_are_refused(url: str):
    with pytest.raises(ValueError):
        to_async_database_url(url)


def test_defaults(monkeypatch: pytest.MonkeyPatch):
    for name in ("PORT", "HOST", "DATABASE_URL", "TURN_SERVER", "TURN_SECRET", "CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 7860)
    assert settings.max_answer_chars == 4000
    assert settings.turn_ttl_seconds == 600
    assert settings.cors_origins == []


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TURN_SERVER", "turn.example.com")
    monkeypatch.setenv("TURN_SECRET", "xyz")
    settings = Settings()
    assert settings.port == 9000
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.turn_secret is not None
    assert "xyz" not in repr(settings)


def test_turn_server_without_secret_fails_fast(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TURN_SERVER", "turn.example.com")
    monkeypatch.delenv("TURN_SECRET", raising=False)
    with pytest.raises(ValidationError, match="TURN_SECRET"):
        Settings()


def test_interviewer_and_evaluation_follow_the_key():
    offline = Settings()
    assert offline.interviewer_engine == "scripted" and not offline.evaluation_enabled
    keyed = Settings(openai_api_key="sk-test")
    assert keyed.interviewer_engine == "llm" and keyed.evaluation_enabled
    chosen = Settings(openai_api_key="sk-test", interviewer="scripted", report_evaluation="false")
    assert chosen.interviewer_engine == "scripted" and not chosen.evaluation_enabled
    assert Settings(openai_api_key="sk-test", openai_model="m").evaluation_model == "m"


@pytest.mark.parametrize(
    "setting",
    [
        {"interviewer": "llm"},
        {"report_evaluation": "true"},
        {"stt_engine": "openai"},
        {"tts_engine": "openai"},
    ],
)
def test_openai_engines_need_a_key(setting):
    with pytest.raises(ValidationError, match="needs OPENAI_API_KEY"):
        Settings(**setting)


def test_blank_openai_values_count_as_unset():
    settings = Settings(openai_api_key="", openai_base_url=" ", interviewer="")
    assert settings.openai_key is None and settings.openai_base_url is None
    assert settings.interviewer_engine == "scripted"


def test_database_url_from_the_parts_a_managed_database_gives():
    settings = Settings(
        db_host="db.internal", db_port=5433, db_name="spool", db_user="app", db_password="p@ss:/w"
    )
    assert settings.database_url == (
        "postgresql://app:p%40ss%3A%2Fw@db.internal:5433/spool?sslmode=require"
    )
    assert "p@ss" not in repr(settings) and "p%40ss" not in repr(settings)
    explicit = Settings(db_host="db.internal", database_url="sqlite:///x.db")
    assert explicit.database_url == "sqlite:///x.db"


def test_a_bad_configuration_is_reported_without_its_secret_values(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("TURN_SECRET", "turn-very-secret-value")
    monkeypatch.setenv("TURN_SERVER", "turn.example.com")
    monkeypatch.setenv("STT_ENGINE", "whisper-cloud")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as error:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(error.value)
    assert "stt_engine" in message
    assert "very-secret" not in message and error.value.__cause__ is None


def test_events_delivery_streams_unless_told_to_poll(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EVENTS_DELIVERY", raising=False)
    assert Settings().events_delivery is EventsDelivery.stream
    monkeypatch.setenv("EVENTS_DELIVERY", "poll")
    assert Settings().events_delivery is EventsDelivery.poll
    monkeypatch.setenv("EVENTS_DELIVERY", "websocket")
    with pytest.raises(ValidationError, match="events_delivery"):
        Settings()


def test_the_drain_and_the_grace_period(monkeypatch: pytest.MonkeyPatch):
    for name in ("SHUTDOWN_GRACE_SECONDS", "DRAIN_MIN_SECONDS", "DRAIN_MAX_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.shutdown_grace_seconds, settings.drain_min_seconds) == (25, 5)
    # Unset, the drain may keep live interviews for all of the grace period but its reserve.
    assert (settings.shutdown_reserve_seconds, settings.drain_limit_seconds) == (10, 15)
    assert Settings(shutdown_grace_seconds=8).drain_limit_seconds == 4  # a short grace: half
    monkeypatch.setenv("SHUTDOWN_GRACE_SECONDS", "110")
    monkeypatch.setenv("DRAIN_MAX_SECONDS", "60")
    assert Settings().drain_limit_seconds == 60
    monkeypatch.setenv("DRAIN_MAX_SECONDS", "")
    assert Settings().drain_limit_seconds == 100


def test_a_drain_longer_than_the_grace_period_allows_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHUTDOWN_GRACE_SECONDS", "25")
    monkeypatch.setenv("DRAIN_MAX_SECONDS", "20")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="DRAIN_MAX_SECONDS must leave 10 s"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_ecs_agent_uri_turns_task_protection_on(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    assert Settings().ecs_agent_uri is None
    monkeypatch.setenv("ECS_AGENT_URI", "http://169.254.170.2/api/0f9c2b7e-1234")
    monkeypatch.setenv("TASK_PROTECTION_MINUTES", "30")
    settings = Settings()
    assert settings.ecs_agent_uri == "http://169.254.170.2/api/0f9c2b7e-1234"
    assert settings.task_protection_minutes == 30
    monkeypatch.setenv("ECS_AGENT_URI", "169.254.170.2/api")
    with pytest.raises(ValidationError, match="ECS_AGENT_URI must be an http:// URL"):
        Settings()
    monkeypatch.setenv("ECS_AGENT_URI", "http://169.254.170.2/api")
    monkeypatch.setenv("TASK_PROTECTION_MINUTES", "2881")  # ECS's maximum is 48 hours
    with pytest.raises(ValidationError):
        Settings()
