"""The one typed settings object of the service, read from the environment once."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


class Environment(StrEnum):
    development = "development"
    production = "production"


class Settings(BaseSettings):
    """All configuration; each field is an environment variable of the same name in capitals.

    The README's configuration table lists these with their defaults.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: Environment = Environment.development
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Addresses whose X-Forwarded-* headers are trusted (the load balancer); "*" behind an ALB.
    forwarded_allow_ips: str = "127.0.0.1"
    shutdown_grace_seconds: int = Field(default=30, ge=0)

    # The default file sits in the project's data/ folder, wherever the service is started from.
    database_url: str = f"sqlite:///{PROJECT_DIR / 'data' / 'spool.db'}"

    plans_dir: Path = PACKAGE_DIR / "plans"
    default_plan_id: str = "backend-engineer-screen"

    session_ttl_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)
    max_answer_chars: int = Field(default=4000, ge=1)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    # Answers shorter than this (in words) earn a follow-up from the scripted interviewer.
    short_answer_words: int = Field(default=8, ge=0)

    # Comma-separated; in development localhost origins are allowed besides these.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    turn_server: str | None = None
    turn_secret: SecretStr | None = None
    turn_tls_port: int | None = Field(default=None, ge=1, le=65535)
    turn_ttl_seconds: int = Field(default=600, ge=60)

    # Voice (WebRTC). Off, the REST API and text interviews work without loading any model.
    voice_enabled: bool = True
    models_dir: Path = PROJECT_DIR / "models"
    whisper_model: Literal["tiny.en", "base"] = "tiny.en"
    stt_beam_size: int = Field(default=1, ge=1, le=10)
    # Transcriptions that may run at once. On 2 cores one is faster: two (each on 2 threads)
    # made the 4-session median slower (benchmarks/README.md).
    stt_workers: int = Field(default=1, ge=1, le=16)
    tts_voice: str = "af_heart"
    # Synthesized sentences kept across restarts (the interviewer's lines repeat).
    speech_cache_dir: Path | None = PROJECT_DIR / "data" / "speech-cache"
    tts_speed: float = Field(default=1.0, gt=0.5, le=2.0)
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    # Silence that ends an answer: long enough that a thinking pause stays inside the answer.
    end_of_turn_silence_seconds: float = Field(default=0.8, ge=0.3, le=5.0)
    max_answer_seconds: float = Field(default=120, ge=5)
    max_concurrent_interviews: int = Field(default=4, ge=1, le=64)
    # Threads for model inference; more than the cores only makes every reply slower.
    speech_threads: int = Field(default=2, ge=1, le=32)
    # "relay" makes the server use only TURN relay candidates (tasks in private subnets).
    rtc_ice_transport_policy: Literal["all", "relay"] = "all"
    # SSE responses end before API Gateway's 30 s integration limit; clients resume with
    # Last-Event-ID.
    events_stream_seconds: float = Field(default=25, gt=0, le=3600)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("turn_server", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _turn_needs_secret(self) -> Settings:
        # Fail at start-up rather than hand browsers credentials the TURN server will refuse.
        if self.turn_server and not (self.turn_secret and self.turn_secret.get_secret_value()):
            raise ValueError("TURN_SERVER is set but TURN_SECRET is empty")
        return self

    @property
    def async_database_url(self) -> str:
        return to_async_database_url(self.database_url)


def to_async_database_url(url: str) -> str:
    """Accept the URLs people write (sqlite:///, postgresql://) and pick the async drivers."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"DATABASE_URL is not a URL: {url!r}")
    dialect = scheme.split("+", 1)[0]
    if dialect == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if dialect in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"DATABASE_URL must be sqlite or postgresql, not {dialect!r}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
