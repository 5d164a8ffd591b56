import pytest
from pydantic import ValidationError

from interview.config import Settings, to_async_database_url


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
