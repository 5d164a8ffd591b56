"""The service's parts wired together from Settings, and their background upkeep."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import SQLAlchemyError

from interview.access import SessionAccess
from interview.cluster.instances import InstanceRegistry
from interview.cluster.relay import Relay
from interview.config import Settings
from interview.events import EventBus
from interview.interviewer import build_interviewer
from interview.plans import PlanCatalog
from interview.report.evaluation import build_evaluator
from interview.report.writer import ReportWriter, RetryPolicy
from interview.retention import Eraser
from interview.sessions import Clock, InterviewService, utcnow
from interview.speech.cache import sentences_of
from interview.speech.stack import SpeechStack
from interview.speech.stt.accurate import accurate_spec
from interview.store import Store
from interview.store.event_log import event_bus_for
from interview.transcription.passes import PassSettings, TranscriptPasses
from interview.transcription.process import AccurateProcess
from interview.turn_credentials import TurnCredentialIssuer
from interview.voice.endpointing import EndpointingOptions, EndpointingPolicy
from interview.voice.gateway import VoiceGateway
from interview.voice.hangup import HangUp
from interview.voice.listener import BargeInOptions, EndOfTurnPolicy, FixedSilence
from interview.voice.ownership import MediaOwnership
from interview.voice.pipeline import ConversationOptions, VoicePipeline
from interview.voice.presence import Presence
from interview.voice.turn_detector import DetectorOptions

log = structlog.get_logger(__name__)

SCHEMA_RETRY_SECONDS = 2.0
EXPIRY_SWEEP_SECONDS = 15.0
DRAIN_REPORT_TIMEOUT_SECONDS = 10.0
DRAIN_POLL_SECONDS = 0.2


@dataclass
class Runtime:
    settings: Settings
    store: Store
    plans: PlanCatalog
    turn_issuer: TurnCredentialIssuer
    events: EventBus
    speech: SpeechStack
    service: InterviewService
    access: SessionAccess
    reports: ReportWriter
    voice: VoiceGateway
    hangup: HangUp
    # This process among the instances sharing the database (interview/cluster/instances.py).
    instances: InstanceRegistry
    # Erasing interviews: on request, and past DATA_RETENTION_DAYS (interview/retention.py).
    erasure: Eraser
    # The accurate pass over kept answer audio (interview/transcription/passes.py).
    passes: TranscriptPasses
    ready: bool = False
    # Why the database could not be brought to the current schema, if it could not.
    schema_error: str | None = None
    draining: bool = False
    # Loop time by which stop() must be done (set when a stop signal starts the drain).
    stop_by: float | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, clock: Clock = utcnow) -> Runtime:
        """Every part, built from Settings and handed what it needs; nothing is loaded yet.
        `clock` is the domain's time (tests move it)."""
        store = Store(
            settings.async_database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        plans = PlanCatalog.load(settings.plans_dir)
        plans.get(settings.default_plan_id)  # a wrong DEFAULT_PLAN_ID fails at start-up
        secret = settings.turn_secret.get_secret_value() if settings.turn_secret else None
        issuer = TurnCredentialIssuer(
            settings.turn_server, secret, settings.turn_tls_port, settings.turn_ttl_seconds
        )
        # PostgreSQL: stored and fanned out to every instance; SQLite: kept in this process.
        events = event_bus_for(store.engine)
        # How /events responses end: streamed, or polled behind a buffering proxy (events.py).
        events.set_delivery(settings.events_delivery)
        interviewer = build_interviewer(settings)
        # Only words of the plans and the script are kept on disk as speech, never a line that
        # may repeat a candidate's (the language model's): nothing personal outlives a session.
        fixed = sentences_of(
            [settings.check_in_line]
            + [line for plan in plans.all() for line in interviewer.fixed_lines(plan)]
        )
        speech = SpeechStack(settings, keep_on_disk=fixed.__contains__)
        service = InterviewService(
            settings, store, plans, interviewer, events, voices=speech, clock=clock
        )
        reports = ReportWriter(
            store,
            plans,
            events,
            evaluator=build_evaluator(settings),
            clock=clock,
            retry=RetryPolicy(
                settings.evaluation_retry_attempts, settings.evaluation_retry_seconds
            ),
        )
        pipeline = VoicePipeline(
            service,
            speech,
            events,
            end_of_turn_policy(settings),
            conversation_options(settings),
        )
        instances = InstanceRegistry(store.engine, settings)
        ownership = MediaOwnership(store.engine, instances, Relay(store.engine, instances.id))
        voice = VoiceGateway(
            settings, service, speech, pipeline, Presence(service), issuer, ownership
        )
        # The accurate pass: its model runs in child processes (started when first needed), and
        # with voice off this instance only sweeps (gives up overdue passes, settles turns).
        spec = accurate_spec(settings) if settings.voice_enabled else None
        workers = settings.accurate_pass_workers if spec is not None else 0
        passes = TranscriptPasses(
            store,
            events,
            [AccurateProcess(spec) for _ in range(workers)] if spec is not None else [],
            PassSettings.from_settings(settings),
            instances.id,
            clock=clock,
            on_transcribed=reports.schedule,
        )
        speech.activity.add_listener(passes.live_work)
        return cls(
            settings=settings,
            store=store,
            plans=plans,
            turn_issuer=issuer,
            events=events,
            speech=speech,
            service=service,
            access=SessionAccess(store, service),
            reports=reports,
            voice=voice,
            hangup=HangUp(voice, events),
            instances=instances,
            erasure=Eraser(service, voice, settings.data_retention_days),
            passes=passes,
        )

    @property
    def instance_id(self) -> str:
        """This process's name among the instances (INSTANCE_ID, or host-pid-random)."""
        return self.instances.id

    async def start(self) -> None:
        log.info("instance_started", instance_id=self.instance_id, shared=self.instances.shared)
        loop = asyncio.get_running_loop()
        self.events.bind_loop(loop)
        # fastrtc runs each connection's emit() and the audio callbacks in the default
        # executor, and some of those calls wait: size it for every live connection.
        workers = 8 + 3 * self.settings.max_concurrent_interviews
        loop.set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="rtc"))
        self._tasks.append(asyncio.create_task(self._initialize()))
        self._tasks.append(asyncio.create_task(self._load_voice()))

    async def stop(self) -> None:
        self.draining = True
        await self.voice.close_all()
        await self.instances.stop()
        self.speech.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Let reports already being written finish, so a restart has less to redo; a report
        # cut short is finished after the restart (resume_pending_reports).
        timeout = DRAIN_REPORT_TIMEOUT_SECONDS
        if self.stop_by is not None:
            timeout = min(timeout, max(0.5, self.stop_by - asyncio.get_running_loop().time()))
        with contextlib.suppress(TimeoutError):
            # The events published so far reach their listeners: an end schedules its report.
            await asyncio.wait_for(self.events.flush(), timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reports.wait(), timeout)
        await self.events.stop()  # stores and delivers what the reports published
        await self.store.dispose()

    async def drain(self, voice_until: float) -> int:
        """Refuse new interviews, let live voice interviews go on until `voice_until` (loop
        time), then close the connections still open; returns how many were closed.

        Every turn is committed the moment it happens, so closing loses no answer that was
        finished. A closed connection is recorded as disconnected and its session stays open:
        the candidate's client reconnects (to an instance that stays) and the interview resumes
        where it was, instead of being ended by every deployment or scale-in.
        """
        self.draining = True
        await self.instances.set_draining()
        loop = asyncio.get_running_loop()
        live = self.voice.live_connections()
        log.info("draining", live_voice_connections=live)
        # Polled: a connection ends on its own (plan finished, candidate left) or at the deadline.
        while loop.time() < voice_until:
            if not self.voice.live_connections():
                break
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        closed = await self.voice.close_all()
        log.info("drained", live_at_start=live, closed_at_deadline=closed)
        return closed

    async def _load_voice(self) -> None:
        # Seconds of model loading: the REST API answers meanwhile, voice says "loading".
        await self.speech.load()
        await self.voice.open()

    async def _initialize(self) -> None:
        # A database that is down at boot (a PostgreSQL still starting) is waited for, with
        # health saying "initializing", instead of crashing the task into a restart loop.
        while True:
            try:
                await self.store.migrate()
                await self.events.start()
                resumed = await self.reports.resume_pending()
                break
            except (SQLAlchemyError, OSError) as exc:
                log.warning("database_not_ready", error=type(exc).__name__)
                await asyncio.sleep(SCHEMA_RETRY_SECONDS)
            except Exception as exc:
                # A database these migrations cannot bring to head (a revision from a newer
                # release, a foreign table): no retry helps; health says why.
                self.schema_error = f"{type(exc).__name__}: {exc}"
                log.exception("schema_migration_failed")
                return
        self.ready = True
        log.info("service_ready", pending_reports_resumed=resumed)
        # With the schema in place: this instance's heartbeat, and what others relay to it.
        self.instances.start()
        self._tasks.append(asyncio.create_task(self.voice.serve_relay()))
        # Evaluations that failed, tried again when due (reports stay ready meanwhile).
        self._tasks.append(asyncio.create_task(self.reports.run_evaluations()))
        # Answers' accurate passes: this instance's and, after a restart, those left pending.
        self._tasks.append(asyncio.create_task(self.passes.run()))
        while True:
            try:
                expired = await self.service.expire_due_sessions()
                if expired:
                    log.info("sessions_expired", count=expired)
                repaired = await self.service.repair_orphaned_answers()
                if repaired:
                    log.info("orphaned_answers_repaired", count=repaired)
                purged = await self.erasure.sweep()
                if purged:
                    log.info(
                        "interviews_purged",
                        count=purged,
                        retention_days=self.settings.data_retention_days,
                    )
            except Exception:
                log.exception("expiry_sweep_failed")
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)


def detector_options(settings: Settings) -> DetectorOptions:
    """When an answer ends, as Settings tune it."""
    evidence = settings.end_of_turn_policy == "evidence"
    return DetectorOptions(
        end_silence=settings.end_of_turn_max_silence_seconds
        if evidence
        else settings.end_of_turn_silence_seconds,
        decide_after=settings.end_of_turn_decide_after_seconds,
        max_turn=settings.max_answer_seconds,
        threshold=settings.vad_threshold,
    )


def conversation_options(settings: Settings) -> ConversationOptions:
    """How the interviewer takes turns, as Settings tune it."""
    return ConversationOptions(
        detector=detector_options(settings),
        barge_in=BargeInOptions(
            abandon_after_speech=settings.barge_in_min_speech_seconds,
            repair_window=settings.repair_window_seconds,
            echo_margin_db=settings.echo_margin_db,
        ),
        check_in_after=settings.check_in_after_seconds,
        check_in_line=settings.check_in_line,
    )


def end_of_turn_policy(settings: Settings) -> EndOfTurnPolicy:
    """What ends an answer: the evidence, or a fixed silence."""
    if settings.end_of_turn_policy == "silence":
        return FixedSilence(settings.end_of_turn_silence_seconds)
    return EndpointingPolicy(EndpointingOptions(fallback=settings.end_of_turn_max_silence_seconds))
