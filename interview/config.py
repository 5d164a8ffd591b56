"""The one typed settings object of the service, read from the environment once."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
# The end of SHUTDOWN_GRACE_SECONDS kept from the drain, for requests in flight and the shutdown.
SHUTDOWN_RESERVE_SECONDS = 10.0
# The longest typed answer /openapi.json publishes (AnswerRequest.text's maxLength): the default
# of MAX_ANSWER_CHARS, which may lower it but not raise it past the contract.
ANSWER_MAX_CHARS = 4000


class Environment(StrEnum):
    development = "development"
    production = "production"


class InterviewerEngine(StrEnum):
    llm = "llm"
    scripted = "scripted"


class SpeechEngine(StrEnum):
    local = "local"
    openai = "openai"


class EventsDelivery(StrEnum):
    """How /events responses end: `stream` holds each open for EVENTS_STREAM_SECONDS; `poll`
    ends one shortly after its first event, for proxies that buffer whole responses."""

    stream = "stream"
    poll = "poll"


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
    # From a stop signal to exit, all included; under the platform's kill timeout (ECS's task
    # stopTimeout: 30 s unless the task definition says otherwise, at most 120 s on Fargate).
    shutdown_grace_seconds: int = Field(default=25, ge=0)
    # The drain after a stop signal: health says 503 and new interviews are refused, but the
    # server keeps accepting and serving requests for at least DRAIN_MIN_SECONDS (so a load
    # balancer or proxy takes it out of rotation before its socket closes), and for as long as
    # live voice interviews go on, at most DRAIN_MAX_SECONDS (those still live are then closed,
    # resumable on another instance). Unset, DRAIN_MAX_SECONDS is SHUTDOWN_GRACE_SECONDS less
    # the reserve kept for requests in flight and the shutdown (shutdown_reserve_seconds).
    drain_min_seconds: float = Field(default=5.0, ge=0, le=600)
    drain_max_seconds: float | None = Field(default=None, ge=0)
    # How long an idle keep-alive connection is kept. Behind a load balancer, longer than its
    # idle timeout (ALB: 60 s), or it may send a request on a connection being closed (a 502).
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    # The ECS agent's endpoint, set by ECS in every container: while this instance holds live
    # voice interviews it protects its task from scale-in and deployments (ECS task scale-in
    # protection, interview/deploy/task_protection.py). Unset (not on ECS): no protection.
    ecs_agent_uri: str | None = None
    # Each protection lasts this long and is renewed halfway: a task whose process hangs is
    # protected for at most this long.
    task_protection_minutes: int = Field(default=10, ge=1, le=2880)

    # The default file sits in the project's data/ folder, wherever the service is started from.
    # Not in repr(): a URL may carry the database password.
    database_url: str = Field(default=f"sqlite:///{PROJECT_DIR / 'data' / 'spool.db'}", repr=False)

    # The parts of a PostgreSQL URL, as a managed database's secret provides them (the CDK
    # stack passes RDS's). Used when DB_HOST is set and DATABASE_URL is not.
    db_host: str | None = None
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_name: str = "postgres"
    db_user: str | None = None
    db_password: SecretStr | None = None
    db_sslmode: str = "require"

    plans_dir: Path = PACKAGE_DIR / "plans"
    default_plan_id: str = "backend-engineer-screen"

    session_ttl_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)
    # An interview (transcript, report, events) is erased this many days after it ended, by a
    # sweep every instance runs; 0 keeps interviews for ever. Hiring data is personal data:
    # kept no longer than a hiring decision needs it (interview/retention.py).
    data_retention_days: int = Field(default=90, ge=0, le=36500)
    max_answer_chars: int = Field(default=ANSWER_MAX_CHARS, ge=1, le=ANSWER_MAX_CHARS)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    # All of a request's headers together; more gets 431 (the HTTP parser has no limit).
    max_header_bytes: int = Field(default=32 * 1024, ge=4096, le=1024 * 1024)
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
    # Short answers encoded in a window just longer than them, not Whisper's 30 s (4-5x faster
    # on tiny.en; benchmarks/README.md, "STT: the short window").
    stt_short_window: bool = True
    # The accurate pass: each spoken answer is transcribed again in the background by a more
    # accurate model, and that text replaces the live one in the transcript and the report.
    # "off": the live text stands (flagged live_only). Chosen by measurement (benchmarks/README.md).
    accurate_stt_model: Literal["base", "off"] = "base"
    accurate_stt_beam_size: int = Field(default=5, ge=1, le=10)
    # Accurate passes this instance runs at once (each in a low-priority process); 0: none here,
    # another instance runs them.
    accurate_pass_workers: int = Field(default=1, ge=0, le=8)
    # One attempt's limit; a stretch is tried this many times, then its live text stands.
    accurate_pass_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    accurate_pass_attempts: int = Field(default=2, ge=1, le=10)
    # The longest the report waits for a stretch's accurate pass, from the end of the answer.
    accurate_pass_deadline_seconds: float = Field(default=600.0, gt=0, le=86_400)
    tts_voice: str = "af_heart"
    # Synthesized sentences kept across restarts (the interviewer's lines repeat).
    speech_cache_dir: Path | None = PROJECT_DIR / "data" / "speech-cache"
    tts_speed: float = Field(default=1.0, gt=0.5, le=2.0)
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    # End of turn. "evidence": after END_OF_TURN_DECIDE_AFTER_SECONDS of silence the pause is
    # judged (Smart Turn on the audio, the words so far), and an unfinished answer is heard out
    # up to END_OF_TURN_MAX_SILENCE_SECONDS. "silence": every answer ends after
    # END_OF_TURN_SILENCE_SECONDS (the old behaviour, kept as a baseline).
    end_of_turn_policy: Literal["evidence", "silence"] = "evidence"
    end_of_turn_decide_after_seconds: float = Field(default=0.12, ge=0.05, le=2.0)
    end_of_turn_max_silence_seconds: float = Field(default=2.5, ge=0.5, le=10.0)
    end_of_turn_silence_seconds: float = Field(default=0.8, ge=0.3, le=5.0)
    # Barge-in: speech over the interviewer pauses it at once; this much speech (or words that
    # are not a backchannel) cuts the line.
    barge_in_min_speech_seconds: float = Field(default=0.4, ge=0.1, le=3.0)
    # Speech this soon after a reply began means the answer was not finished: the reply is
    # withdrawn and the answer goes on.
    repair_window_seconds: float = Field(default=1.5, ge=0, le=5.0)
    # The candidate's voice must be this much louder (dB) than the interviewer's audio that may
    # still echo back to count as theirs.
    echo_margin_db: float = Field(default=-8.0, ge=-40.0, le=10.0)
    # After a question, this long a silence gets one gentle check-in; 0 never checks in.
    check_in_after_seconds: float = Field(default=10.0, ge=0, le=600)
    check_in_line: str = Field(
        default="Take your time; tell me when you're ready.", min_length=1, max_length=300
    )
    max_answer_seconds: float = Field(default=120, ge=5)
    max_concurrent_interviews: int = Field(default=4, ge=1, le=64)
    # Threads for model inference; more than the cores only makes every reply slower.
    speech_threads: int = Field(default=2, ge=1, le=32)
    # "relay" makes the server use only TURN relay candidates (tasks in private subnets).
    rtc_ice_transport_policy: Literal["all", "relay"] = "all"
    # SSE responses end before API Gateway's 30 s integration limit; clients resume with
    # Last-Event-ID.
    events_stream_seconds: float = Field(default=25, gt=0, le=3600)
    # API Gateway HTTP APIs buffer each response whole (only REST APIs can stream), so events
    # would reach the browser in EVENTS_STREAM_SECONDS batches: "poll" ends a response shortly
    # after its first event and the client asks again with Last-Event-ID (interview/events.py).
    events_delivery: EventsDelivery = EventsDelivery.stream

    # Limits on abuse (interview/api/limits.py): new interviews and answers per client, in the
    # `limits` library's notation ("20/minute", "5 per 10 seconds", "20/minute;200/hour"), as
    # fixed windows counted by every instance together in PostgreSQL (in memory on SQLite).
    # Over a limit: 429 with Retry-After.
    rate_limit_enabled: bool = True
    rate_limit_start: str = "20/minute"
    rate_limit_answers: str = "60/minute"
    # How the client is told apart behind proxies: 0 takes the connection's address (what uvicorn
    # made of X-Forwarded-For from FORWARDED_ALLOW_IPS); N > 0 takes the N-th entry from the end
    # of CLIENT_ADDRESS_HEADER, the one the outermost of N trusted proxies wrote (the entries
    # before it are the client's own, and may be forged). Behind API Gateway (HTTP API) and an
    # ALB: 1 and "forwarded", where API Gateway appends the address it saw.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    client_address_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    # A request body must have arrived this long after the app asks for it (408 otherwise):
    # a client that stalls cannot hold a connection and a request's memory for minutes.
    request_body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Open /events streams per session on one instance; one client needs one (two while it
    # reconnects). Each holds a connection and a database subscription.
    events_max_streams: int = Field(default=4, ge=1, le=1000)

    # Several instances on one PostgreSQL (README "Several instances"). This process's name
    # among them; unset, one is made from the host name, the process id and a random suffix.
    instance_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    # How often an instance says it is alive, and how long a silence makes it dead: a session
    # whose voice connection it held may then be taken by an offer on any other instance.
    instance_heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    instance_dead_after_seconds: float = Field(default=10.0, gt=0, le=600)
    # Connections to the database kept per instance (PostgreSQL), and how many more at peaks:
    # each answer holds one for its session lock beside the ones its writes take.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=20, ge=0, le=200)

    # The OpenAI API, or any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server).
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    # Defaults chosen from models with no announced shutdown in the pinned SDK (openai 3.57).
    openai_model: str = "gpt-5.4-mini"
    # Sent only when set: some models (reasoning ones) accept no temperature but their default.
    openai_temperature: float | None = Field(default=None, ge=0, le=2)
    # Defaults to OPENAI_MODEL; the evaluation can use a stronger model than the live turns.
    openai_evaluation_model: str | None = None
    # "llm" needs OPENAI_API_KEY; unset, it is "llm" when a key is set and "scripted" otherwise.
    interviewer: InterviewerEngine | None = None
    # One live turn may spend this long on the model, retries included, before the scripted
    # interviewer's line is used instead: a candidate should not wait in silence.
    llm_turn_budget_seconds: float = Field(default=8.0, gt=0, le=120)
    llm_max_attempts: int = Field(default=3, ge=1, le=10)
    # The language model's evaluation in the results report; unset, on when a key is set.
    report_evaluation: bool | None = None
    evaluation_timeout_seconds: float = Field(default=120.0, gt=0, le=1800)
    evaluation_max_attempts: int = Field(default=3, ge=1, le=10)
    # An evaluation still failing after those attempts leaves the report ready without it, and
    # is tried again in the background this many times (0: never), the first
    # EVALUATION_RETRY_SECONDS after, each pause doubling up to an hour: a model that is down
    # for a while still evaluates the interviews it missed (6 x 60 s spans about an hour).
    evaluation_retry_attempts: int = Field(default=6, ge=0, le=100)
    evaluation_retry_seconds: float = Field(default=60.0, gt=0, le=3600)
    stt_engine: SpeechEngine = SpeechEngine.local
    openai_stt_model: str = "gpt-transcribe"
    tts_engine: SpeechEngine = SpeechEngine.local
    # Every speech model the SDK lists has an announced shutdown (2027-01-06); set the
    # replacement here when OpenAI names one.
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "alloy"
    # One OpenAI speech call may take this long before the local engine is used instead.
    openai_speech_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

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

    @field_validator("rate_limit_start", "rate_limit_answers")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError:
            raise ValueError(
                "not a rate limit: write it like '20/minute', '5 per 10 seconds' or "
                "'20/minute;200/hour'"
            ) from None
        if any(item.amount < 1 for item in items):
            raise ValueError("a rate limit lets at least one request through")
        return value

    @field_validator(
        "turn_server", "openai_api_key", "openai_base_url", "openai_evaluation_model",
        "interviewer", "report_evaluation", "openai_temperature", "db_host", "instance_id",
        "ecs_agent_uri", "drain_max_seconds",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _a_pause_is_judged_before_it_ends_the_answer(self) -> Settings:
        if self.end_of_turn_decide_after_seconds >= self.end_of_turn_max_silence_seconds:
            raise ValueError(
                "END_OF_TURN_DECIDE_AFTER_SECONDS must be shorter than "
                "END_OF_TURN_MAX_SILENCE_SECONDS"
            )
        return self

    @field_validator("ecs_agent_uri")
    @classmethod
    def _agent_uri_is_http(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError("ECS_AGENT_URI must be an http:// URL (ECS sets it)")
        return value

    @model_validator(mode="after")
    def _the_drain_fits_the_grace_period(self) -> Settings:
        limit = self.shutdown_grace_seconds - self.shutdown_reserve_seconds
        if self.drain_max_seconds is not None and self.drain_max_seconds > limit:
            raise ValueError(
                f"DRAIN_MAX_SECONDS must leave {self.shutdown_reserve_seconds:g} s of "
                f"SHUTDOWN_GRACE_SECONDS for the requests in flight and the shutdown: at most "
                f"{limit:g} with SHUTDOWN_GRACE_SECONDS={self.shutdown_grace_seconds} (raise "
                "both it and the platform's stop timeout for a longer drain)"
            )
        return self

    @model_validator(mode="after")
    def _turn_needs_secret(self) -> Settings:
        # Fail at start-up rather than hand browsers credentials the TURN server will refuse.
        if self.turn_server and not (self.turn_secret and self.turn_secret.get_secret_value()):
            raise ValueError("TURN_SERVER is set but TURN_SECRET is empty")
        return self

    @model_validator(mode="after")
    def _database_from_parts(self) -> Settings:
        if self.db_host and "database_url" not in self.model_fields_set:
            user = quote(self.db_user or "", safe="")
            password = self.db_password.get_secret_value() if self.db_password else ""
            auth = f"{user}:{quote(password, safe='')}@" if password else f"{user}@" if user else ""
            self.database_url = (
                f"postgresql://{auth}{self.db_host}:{self.db_port}/{quote(self.db_name, safe='')}"
                f"?sslmode={quote(self.db_sslmode, safe='')}"
            )
        return self

    @model_validator(mode="after")
    def _openai_needs_key(self) -> Settings:
        needs = [
            name
            for name, wanted in (
                ("INTERVIEWER=llm", self.interviewer is InterviewerEngine.llm),
                ("REPORT_EVALUATION=true", self.report_evaluation is True),
                ("STT_ENGINE=openai", self.stt_engine is SpeechEngine.openai),
                ("TTS_ENGINE=openai", self.tts_engine is SpeechEngine.openai),
            )
            if wanted
        ]
        if needs and self.openai_key is None:
            raise ValueError(f"{', '.join(needs)} needs OPENAI_API_KEY")
        return self

    @property
    def shutdown_reserve_seconds(self) -> float:
        """What the end of SHUTDOWN_GRACE_SECONDS keeps for requests in flight and the lifespan
        shutdown (reports, database): SHUTDOWN_RESERVE_SECONDS, or half of a shorter grace."""
        return min(SHUTDOWN_RESERVE_SECONDS, self.shutdown_grace_seconds / 2)

    @property
    def drain_limit_seconds(self) -> float:
        """The longest a drain keeps live voice interviews: DRAIN_MAX_SECONDS, or all of the
        grace period but its reserve."""
        if self.drain_max_seconds is not None:
            return self.drain_max_seconds
        return self.shutdown_grace_seconds - self.shutdown_reserve_seconds

    @property
    def openai_key(self) -> str | None:
        key = self.openai_api_key.get_secret_value() if self.openai_api_key else ""
        return key or None

    @property
    def interviewer_engine(self) -> InterviewerEngine:
        if self.interviewer is not None:
            return self.interviewer
        return InterviewerEngine.llm if self.openai_key else InterviewerEngine.scripted

    @property
    def evaluation_enabled(self) -> bool:
        if self.report_evaluation is not None:
            return self.report_evaluation
        return self.openai_key is not None

    @property
    def evaluation_model(self) -> str:
        return self.openai_evaluation_model or self.openai_model

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


class ConfigError(Exception):
    """Invalid configuration, described without the values given (they may be secrets)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # pydantic's own message quotes the input, which holds OPENAI_API_KEY and TURN_SECRET.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
