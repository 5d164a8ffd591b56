"""The pass runner on a real database (SQLite and PostgreSQL) with a real Whisper child: an
answer's stretches get the accurate text and word times, failures and the deadline leave the
live text flagged, an erased interview is harmless, and the report hears when all is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from structlog.testing import capture_logs

from interview.config import to_async_database_url
from interview.domain import EndReason, PassState, SessionStatus, Transcription
from interview.events import InProcessEventBus, TurnCommitted
from interview.store import SessionRow, Store, TurnRow
from interview.store.answer_audio import AnswerAudio, new_stretch
from interview.store.tables import AnswerAudioRow
from interview.transcription.passes import PassSettings, TranscriptPasses
from interview.transcription.process import AccurateProcess
from tests.transcription.audio import RATE, long_noise, spoken, tiny_spec, words_of

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
FIRST = "I moved the billing service to a new database."
SECOND = "Then we split the workers into two queues."


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(to_async_database_url(database_url))
    await store.migrate()
    yield store
    await store.dispose()


@pytest.fixture
async def process() -> AsyncIterator[AccurateProcess]:
    child = AccurateProcess(tiny_spec())
    yield child
    await child.close()


async def interview(
    store: Store, stretches: list[tuple[bytes, str, int]], session_id: str = "s1"
) -> None:
    """A session whose answer (turn 1) was spoken in `stretches`: (pcm, live text, offset ms)."""
    session = SessionRow(
        id=session_id,
        token_hash="0" * 64,
        user_id="u",
        plan_id="p",
        meta={},
        status=SessionStatus.active,
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
        question_index=0,
        follow_ups_used=0,
        connection_state="none",
    )
    turn = dict(session_id=session_id, source="voice", question_index=0, started_at=T0, ended_at=T0)
    question = TurnRow(index=0, role="interviewer", kind="question", text="Tell me.", **turn)
    live = " ".join(text for _pcm, text, _offset in stretches)
    answer = TurnRow(
        index=1, role="candidate", kind="answer", text=live, transcription="live", **turn
    )
    await store.insert_session(session, question, answer)
    for segment, (pcm, text, offset_ms) in enumerate(stretches):
        stretch = new_stretch(
            session_id=session_id,
            turn_index=1,
            segment=segment,
            offset_ms=offset_ms,
            pcm=pcm,
            sample_rate=RATE,
            live_text=text,
            context="Tell me. PostgreSQL, Kubernetes.",
            now=T0,
            deadline_seconds=600,
        )
        await store.continue_turn(session_id, 1, stretch, transcription=Transcription.live)


async def end(store: Store, session_id: str = "s1") -> None:
    assert await store.end_session_if_open(
        session_id, status=SessionStatus.ended, reason=EndReason.candidate, at=T0
    )


def runner(store, processes, clock=None, *, instance="i1", fired=None, **settings):
    return TranscriptPasses(
        store,
        InProcessEventBus(),
        processes,
        PassSettings(**{"timeout_seconds": 60.0, "attempts": 2, **settings}),
        instance,
        clock or Clock(),
        on_transcribed=(fired if fired is not None else []).append,
    )


async def answer(store: Store, session_id: str = "s1") -> TurnRow:
    turns = await store.list_turns(session_id)
    return turns[1]


async def stretches(store: Store, session_id: str = "s1") -> list[AnswerAudioRow]:
    return list(await AnswerAudio(store).stretches(session_id))


async def claimed(store: Store) -> bool:
    return any(r.claimed_by for r in await stretches(store))


async def settled(store: Store, session_id: str = "s1") -> bool:
    return (await answer(store, session_id)).transcription != Transcription.live


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {seconds} s")


async def test_an_answer_in_two_stretches_gets_the_accurate_text_and_word_times(store, process):
    await interview(store, [(spoken(FIRST), "I moved the bill", 0), (spoken(SECOND), "then", 6000)])
    await end(store)
    fired: list[str] = []
    passes = runner(store, [process], fired=fired)
    audio = AnswerAudio(store)
    assert await audio.pending_passes("s1") == 2

    with capture_logs() as logs:
        assert await passes.work_once(process)
        # The answer waits for both: its turn is settled once, when the last is done.
        assert fired == [] and await audio.pending_passes("s1") == 2
        assert (await answer(store)).transcription == Transcription.live  # one still to come
        assert await passes.work_once(process)
        assert not await passes.work_once(process)  # nothing left

    turn = await answer(store)
    assert turn.transcription == Transcription.accurate and turn.transcription_note is None
    assert turn.draft_text == "I moved the bill then"
    said = words_of(turn.text)
    assert {"billing", "service", "workers", "queues"} <= set(said)
    # The words, from the turn's start: the second stretch's 6 s later than its own times.
    assert turn.words is not None
    rows = await stretches(store)
    assert [r.state for r in rows] == [PassState.done, PassState.done]
    assert [r.audio for r in rows] == [None, None]
    first, second = rows[0].words or [], rows[1].words or []
    own = [*first, *[[w, s + 6.0, e + 6.0] for w, s, e in second]]
    assert turn.words == [
        [w, pytest.approx(s, abs=0.002), pytest.approx(e, abs=0.002)] for w, s, e in own
    ]
    for stretch in rows:
        assert "".join(w for w, _s, _e in stretch.words or []).strip() == stretch.accurate_text
    workers = [w for w, _s, _e in turn.words].index(" workers")
    assert 6.0 < turn.words[workers][1] < 9.0
    assert fired == ["s1"] and await audio.pending_passes("s1") == 0

    events = [e.body for e in await passes.events.history("s1")]
    assert [(e.index, e.text) for e in events if isinstance(e, TurnCommitted)] == [(1, turn.text)]
    passes_logged = [entry for entry in logs if entry["event"] == "accurate_pass"]
    assert [(e["segment"], e["outcome"]) for e in passes_logged] == [(0, "done"), (1, "done")]
    for entry in passes_logged:
        assert entry["session_id"] == "s1" and entry["turn_index"] == 1
        assert entry["pid"] == process.pid and entry["audio_seconds"] > 1
        assert {"seconds", "started", "ended"} <= set(entry)
    spoken_words = set(said) - {"the", "to", "a", "we", "i", "into", "two", "then", "new"}
    assert not any(word in str(entry).lower() for entry in logs for word in spoken_words)


async def test_failed_attempts_leave_the_live_text_flagged_and_drop_the_audio(store, process):
    # The first answer cannot finish in its time; the second is not audio the engine takes.
    await interview(store, [(long_noise(25.0), "live words", 0)], session_id="slow")
    await interview(store, [(b"\x01\x02\x03", "broken", 0)], session_id="bad")
    passes = runner(store, [process], timeout_seconds=0.3, attempts=2)
    with capture_logs() as logs:
        for _ in range(4):
            assert await passes.work_once(process)
        assert not await passes.work_once(process)
    outcomes = sorted(e["outcome"] for e in logs if e["event"] == "accurate_pass")
    assert outcomes == ["failed", "failed", "timed_out", "timed_out"]
    for session_id, note, live in (
        ("slow", "timed_out", "live words"),
        ("bad", "failed", "broken"),
    ):
        [row] = await stretches(store, session_id)
        assert (row.state, row.error, row.audio, row.attempts) == (PassState.failed, note, None, 2)
        turn = await answer(store, session_id)
        assert turn.transcription == Transcription.live_only
        assert turn.transcription_note == note
        assert (turn.text, turn.draft_text, turn.words) == (live, live, None)


async def test_the_deadline_gives_up_on_any_instance_and_the_report_hears_of_it(store):
    await interview(store, [(spoken(FIRST), "I moved", 0), (spoken(SECOND), "then", 5000)])
    await end(store)
    clock = Clock()
    fired: list[str] = []
    passes = runner(store, [], clock, fired=fired)  # this instance runs no passes itself
    # A live instance holds the second stretch's lease; the deadline gives it up anyway.
    holder = await AnswerAudio(store).claim("other", T0, timedelta(hours=1), 2)
    assert holder is not None
    await passes.sweep()
    assert fired == [] and (await answer(store)).transcription == Transcription.live
    clock.now = T0 + timedelta(seconds=601)
    await passes.sweep()
    turn = await answer(store)
    assert turn.transcription == Transcription.live_only and turn.transcription_note == "timed_out"
    assert turn.text == "I moved then" and turn.words is None
    assert all(r.state == PassState.failed and r.audio is None for r in await stretches(store))
    assert fired == ["s1"]
    # The holder's late result is refused: the deadline stands.
    assert not await AnswerAudio(store).finish(holder.id, "other", "late", [])
    await passes.sweep()
    assert fired == ["s1"]  # once


async def test_a_lapsed_lease_is_taken_over_and_the_dead_instance_cannot_write(store, process):
    await interview(store, [(spoken(FIRST), "I moved", 0)])
    audio = AnswerAudio(store)
    dead = await audio.claim("dead", T0, timedelta(seconds=90), 2)
    assert dead is not None and dead.attempts == 1
    clock = Clock()
    passes = runner(store, [process], clock)
    clock.now = T0 + timedelta(seconds=60)
    assert not await passes.work_once(process)  # still held
    clock.now = T0 + timedelta(seconds=91)
    assert await passes.work_once(process)
    [row] = await stretches(store)
    assert (row.state, row.claimed_by, row.attempts) == (PassState.done, "i1", 2)
    assert not await audio.finish(dead.id, "dead", "stale", [])
    assert (await answer(store)).transcription == Transcription.accurate


async def test_spent_attempts_of_a_dead_holder_are_given_up_once_its_lease_lapses(store):
    await interview(store, [(spoken(FIRST), "I moved", 0)])
    audio = AnswerAudio(store)
    for _ in range(2):  # two instances died mid-pass, one after the other
        claimed = await audio.claim("dead", T0 + timedelta(minutes=5 * _), timedelta(minutes=2), 2)
        assert claimed is not None
    clock = Clock()
    clock.now = T0 + timedelta(minutes=6)
    passes = runner(store, [], clock)
    await passes.sweep()
    assert (await answer(store)).transcription == Transcription.live
    clock.now = T0 + timedelta(minutes=8)
    await passes.sweep()
    turn = await answer(store)
    assert (turn.transcription, turn.transcription_note) == (Transcription.live_only, "failed")


async def test_an_interview_erased_mid_pass_is_harmless(store, process):
    await interview(store, [(spoken(FIRST * 3), "I moved", 0)])
    passes = runner(store, [process])
    with capture_logs() as logs:
        running = asyncio.create_task(passes.work_once(process))
        await eventually(lambda: claimed(store), seconds=30)
        assert await store.delete_sessions(["s1"]) == ["s1"]
        assert await running
    assert [e["outcome"] for e in logs if e["event"] == "accurate_pass"] == ["superseded"]
    assert await stretches(store) == [] and await store.list_turns("s1") == []
    assert await passes.events.history("s1") == []
    await passes.sweep()


async def test_a_new_runner_finishes_what_a_stopped_one_left_pending(database_url, process):
    first = Store(to_async_database_url(database_url))
    await first.migrate()
    await interview(first, [(spoken(FIRST), "I moved", 0), (spoken(SECOND), "then", 5000)])
    stopped = runner(first, [AccurateProcess(tiny_spec())], instance="old")
    running = asyncio.create_task(stopped.run())
    await eventually(lambda: claimed(first), seconds=60)  # stopped mid-pass
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await first.dispose()

    store = Store(to_async_database_url(database_url))
    try:
        pending = [r for r in await stretches(store) if r.state == PassState.pending]
        assert pending and all(r.claimed_by is None for r in pending)  # handed back
        fired: list[str] = []
        passes = runner(store, [process], instance="new", fired=fired)
        task = asyncio.create_task(passes.run())
        try:
            await eventually(lambda: settled(store), seconds=120)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        rows = await stretches(store)
        assert [r.state for r in rows] == [PassState.done, PassState.done]
        assert all(r.attempts == 1 for r in rows)  # the stopped pass was not counted
        assert (await answer(store)).transcription == Transcription.accurate
    finally:
        await store.dispose()


async def test_two_instances_on_one_postgresql_never_run_the_same_stretch(postgres_server):
    url = to_async_database_url(postgres_server.create_database())
    stores = [Store(url), Store(url)]
    await stores[0].migrate()
    children = [AccurateProcess(tiny_spec()), AccurateProcess(tiny_spec())]
    try:
        for n in range(3):
            await interview(
                stores[0],
                [(spoken(FIRST), "I moved", 0), (spoken(SECOND), "then", 4000)],
                session_id=f"s{n}",
            )
        # Racing claims, as many as there are stretches and more, from both instances at once.
        audio = [AnswerAudio(stores[0]), AnswerAudio(stores[1])]
        lease = timedelta(minutes=2)
        claims = await asyncio.gather(
            *(audio[n % 2].claim(f"i{n % 2}", T0, lease, 2) for n in range(16))
        )
        won = [c.id for c in claims if c is not None]
        assert len(won) == 6 and len(set(won)) == 6
        for claim, n in zip(claims, range(16), strict=True):
            if claim is not None:
                assert await audio[n % 2].release(claim.id, f"i{n % 2}")

        # Both instances' runners together: each stretch is transcribed once.
        fired: list[str] = []
        runners = [
            runner(stores[n], [children[n]], instance=f"i{n}", fired=fired) for n in range(2)
        ]
        with capture_logs() as logs:
            tasks = [asyncio.create_task(r.run()) for r in runners]
            try:
                for n in range(3):
                    await eventually(partial(settled, stores[0], f"s{n}"), seconds=180)
                pids = {c.pid for c in children}
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        passes_logged = [e for e in logs if e["event"] == "accurate_pass"]
        ran = [(e["session_id"], e["segment"]) for e in passes_logged]
        assert sorted(ran) == sorted({(f"s{n}", s) for n in range(3) for s in (0, 1)})
        assert {e["outcome"] for e in passes_logged} == {"done"}
        # Each ran in its own instance's child.
        assert {e["pid"] for e in passes_logged} <= pids
        for n in range(3):
            rows = await stretches(stores[1], f"s{n}")
            assert all(r.state == PassState.done and r.attempts == 1 for r in rows)
            assert (await answer(stores[1], f"s{n}")).transcription == Transcription.accurate
    finally:
        for child in children:
            await child.close()
        for store in stores:
            await store.dispose()
