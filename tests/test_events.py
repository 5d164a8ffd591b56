"""InProcessEventBus: per-session history, replay after an id, live delivery across threads."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator

import pytest

from interview.config import EventsDelivery
from interview.domain import EndReason, SessionStatus
from interview.events import (
    MAX_EVENTS_PER_SESSION,
    MAX_SESSIONS,
    POLL_LINGER_SECONDS,
    CandidateChanged,
    CandidateState,
    Event,
    InProcessEventBus,
    InterviewerSpeaking,
    SpeakingState,
    StatusChanged,
)

WAIT = 10.0  # seconds; only ever reached if something is broken


def tick(n: int = 0) -> InterviewerSpeaking:
    """A small event that carries a number, to tell events apart."""
    return InterviewerSpeaking(state=SpeakingState.queued, index=n)


def number(event: Event) -> int | None:
    assert isinstance(event.body, InterviewerSpeaking)
    return event.body.index


async def next_event(events: AsyncIterator[Event]) -> Event:
    return await asyncio.wait_for(anext(events), WAIT)


async def started(events: AsyncIterator[Event]) -> asyncio.Task[Event]:
    """Start waiting for the next event, so the subscription is registered, and return the wait."""
    waiting = asyncio.ensure_future(next_event(events))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiting.done()
    return waiting


async def test_publish_returns_the_event_and_keeps_it_in_history() -> None:
    bus = InProcessEventBus()
    event = bus.publish("s1", InterviewerSpeaking(state=SpeakingState.started, index=2))

    assert event.session_id == "s1"
    assert event.type == "speaking"
    assert json.loads(event.json()) == {
        "type": "speaking",
        "role": "interviewer",
        "state": "started",
        "index": 2,
        "seconds": None,
        "latency_ms": None,
    }
    assert await bus.history("s1") == [event]
    assert await bus.history("unknown") == []


def test_ids_strictly_increase_across_sessions() -> None:
    bus = InProcessEventBus()
    events = [bus.publish(f"s{i % 3}", tick(i)) for i in range(30)]
    ids = [event.id for event in events]
    assert all(later > earlier for earlier, later in itertools.pairwise(ids))


async def test_history_after_an_id_holds_only_later_events() -> None:
    bus = InProcessEventBus()
    events = [bus.publish("s1", tick(i)) for i in range(5)]
    bus.publish("s2", tick())

    assert await bus.history("s1") == events
    assert await bus.history("s1", after_id=events[1].id) == events[2:]
    assert await bus.history("s1", after_id=events[-1].id) == []
    assert await bus.history("s1", after_id=0) == events


async def test_the_per_session_buffer_is_bounded_to_the_newest_events() -> None:
    bus = InProcessEventBus()
    events = [bus.publish("s1", tick(i)) for i in range(MAX_EVENTS_PER_SESSION + 25)]
    other = bus.publish("s2", tick())

    history = await bus.history("s1")
    assert len(history) == MAX_EVENTS_PER_SESSION
    assert history == events[-MAX_EVENTS_PER_SESSION:]
    assert await bus.history("s2") == [other]  # one busy session does not crowd out another


def test_listeners_are_called_with_every_event() -> None:
    # One instance: every event is this process's, so plain and `everywhere` listeners alike
    # get them all.
    bus = InProcessEventBus()
    seen: list[Event] = []
    also: list[str] = []
    bus.add_listener(seen.append)
    bus.add_listener(lambda event: also.append(event.type), everywhere=True)

    one = bus.publish("s1", tick(1))
    two = bus.publish("s2", StatusChanged(status=SessionStatus.ended, reason=EndReason.candidate))

    assert seen == [one, two]
    assert also == ["speaking", "status"]


def test_a_failing_listener_does_not_keep_the_event_from_the_others() -> None:
    bus = InProcessEventBus()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    bus.add_listener(seen.append)
    event = bus.publish("s1", tick())
    assert seen == [event]


def test_an_event_published_by_a_listener_comes_after_the_one_it_handles() -> None:
    bus = InProcessEventBus()
    order: list[tuple[str, int | None]] = []

    def echo(event: Event) -> None:
        order.append(("first", number(event)))
        if number(event) == 1:
            bus.publish("s1", tick(2))

    bus.add_listener(echo)
    bus.add_listener(lambda event: order.append(("second", number(event))))
    bus.publish("s1", tick(1))
    assert order == [("first", 1), ("second", 1), ("first", 2), ("second", 2)]


async def test_subscribe_replays_what_came_after_an_id_then_follows_live() -> None:
    bus = InProcessEventBus()
    bus.bind_loop(asyncio.get_running_loop())
    old = [bus.publish("s1", tick(i)) for i in range(4)]
    subscription = bus.subscribe("s1", after_id=old[1].id)

    assert await next_event(subscription) == old[2]
    assert await next_event(subscription) == old[3]
    waiting = await started(subscription)
    bus.publish("s2", tick())  # another session's events are not delivered here
    live = bus.publish("s1", tick(4))
    assert await waiting == live
    await subscription.aclose()


async def test_subscribe_without_an_id_gives_only_new_events() -> None:
    bus = InProcessEventBus()
    bus.bind_loop(asyncio.get_running_loop())
    bus.publish("s1", tick())
    subscription = bus.subscribe("s1")

    waiting = await started(subscription)
    live = bus.publish("s1", tick())

    assert await waiting == live
    await subscription.aclose()


async def test_every_subscriber_gets_each_live_event_once_in_order() -> None:
    bus = InProcessEventBus()
    bus.bind_loop(asyncio.get_running_loop())
    first = bus.publish("s1", tick(0))
    subscriptions = [bus.subscribe("s1", after_id=first.id) for _ in range(3)]
    waits = [await started(subscription) for subscription in subscriptions]

    live = [bus.publish("s1", tick(i)) for i in range(1, 4)]

    for subscription, waiting in zip(subscriptions, waits, strict=True):
        got = [await waiting] + [await next_event(subscription) for _ in live[1:]]
        assert got == live
        assert await bus.history("s1", after_id=live[-1].id) == []
        await subscription.aclose()


async def test_a_reconnecting_client_misses_nothing() -> None:
    # SSE reconnect: the client gives the id of the last event it saw.
    bus = InProcessEventBus()
    bus.bind_loop(asyncio.get_running_loop())
    subscription = bus.subscribe("s1")
    waiting = await started(subscription)
    seen = bus.publish("s1", tick(0))
    assert await waiting == seen
    await subscription.aclose()

    missed = [bus.publish("s1", tick(i)) for i in range(1, 4)]
    again = bus.subscribe("s1", after_id=seen.id)

    assert [await next_event(again) for _ in missed] == missed
    await again.aclose()


async def test_publishing_from_another_thread_reaches_an_asyncio_subscriber() -> None:
    bus = InProcessEventBus()
    loop = asyncio.get_running_loop()
    bus.bind_loop(loop)
    loop_thread = threading.get_ident()
    listener_threads: list[int] = []
    bus.add_listener(lambda _event: listener_threads.append(threading.get_ident()))
    subscription = bus.subscribe("s1")
    waiting = await started(subscription)

    published: list[Event] = []

    def publish_from_a_worker() -> None:
        published.extend(
            bus.publish("s1", CandidateChanged(state=CandidateState.transcribing)) for _ in range(3)
        )

    worker = threading.Thread(target=publish_from_a_worker)
    worker.start()
    await asyncio.to_thread(worker.join, WAIT)

    got = [await waiting] + [await next_event(subscription) for _ in range(2)]
    assert got == published
    # Listeners run on the loop's thread, where the subscribers are.
    assert listener_threads == [loop_thread] * 3
    await subscription.aclose()


async def test_events_published_by_many_threads_reach_a_subscriber_in_id_order() -> None:
    bus = InProcessEventBus()
    bus.bind_loop(asyncio.get_running_loop())
    subscription = bus.subscribe("s1", after_id=0)
    waiting = await started(subscription)

    def publish_many() -> None:
        for i in range(100):
            bus.publish("s1", tick(i))

    workers = [threading.Thread(target=publish_many) for _ in range(4)]
    for worker in workers:
        worker.start()
    # The loop keeps running (and delivering) while the threads publish.
    for worker in workers:
        await asyncio.to_thread(worker.join, WAIT)

    got = [await waiting] + [await next_event(subscription) for _ in range(399)]
    assert [event.id for event in got] == [event.id for event in await bus.history("s1")]
    assert sorted(event.id for event in got) == [event.id for event in got]
    assert len({event.id for event in got}) == 400
    await subscription.aclose()


async def test_a_closed_subscription_gets_nothing_more() -> None:
    bus = InProcessEventBus()
    bus.bind_loop(asyncio.get_running_loop())
    subscription = bus.subscribe("s1")
    waiting = await started(subscription)
    first = bus.publish("s1", tick())
    assert await waiting == first
    await subscription.aclose()

    bus.publish("s1", tick())  # nobody waits for it; publishing still works

    with pytest.raises(StopAsyncIteration):
        await anext(subscription)


async def test_a_live_subscriber_keeps_its_events_while_many_other_sessions_start() -> None:
    # The bus keeps at most MAX_SESSIONS sessions. A session still being watched, and still
    # publishing, must not be the one dropped because newer sessions appeared.
    bus = InProcessEventBus()
    bus.bind_loop(asyncio.get_running_loop())
    subscription = bus.subscribe("live")
    waiting = await started(subscription)
    first = bus.publish("live", tick(0))
    assert await waiting == first

    for i in range(MAX_SESSIONS):
        bus.publish(f"other-{i}", tick())
        if i % 500 == 0:
            bus.publish("live", tick(i))  # the live session keeps talking meanwhile
            await next_event(subscription)

    waiting = await started(subscription)
    latest = bus.publish("live", tick(-1))
    assert [number(event) for event in await bus.history("live")] == [0, 0, 500, 1000, 1500, -1]
    assert await waiting == latest
    await subscription.aclose()


async def test_poll_delivery_ends_a_subscription_shortly_after_its_first_event() -> None:
    # EVENTS_DELIVERY=poll: behind a proxy that buffers whole responses, a response must end
    # soon after it has something to say; the client asks again with the last id.
    bus = InProcessEventBus()
    bus.set_delivery(EventsDelivery.poll)
    assert bus.linger_seconds == POLL_LINGER_SECONDS
    # A longer linger than the service's, so a loaded machine's scheduling delays (tens of
    # milliseconds) cannot move the second event past it; the behaviour is the same.
    linger = bus.linger_seconds = 1.0
    loop = asyncio.get_running_loop()
    bus.bind_loop(loop)
    first = bus.publish("s1", tick(0))
    subscription = bus.subscribe("s1", after_id=first.id)
    waiting = await started(subscription)  # nothing yet: it waits as long as the caller lets it

    published = loop.time()
    live = bus.publish("s1", tick(1))
    assert await waiting == live
    # An event that comes within the linger shares the response...
    loop.call_later(0.05, lambda: bus.publish("s1", tick(2)))
    assert number(await next_event(subscription)) == 2
    # ...then the subscription ends on its own, about the linger after the first event (no
    # sooner than the linger after it was published, well before a stream's timeout).
    with pytest.raises(StopAsyncIteration):
        await next_event(subscription)
    assert linger <= loop.time() - published + 0.01 < linger + 2.0


async def test_poll_delivery_ends_after_a_replayed_backlog() -> None:
    bus = InProcessEventBus()
    bus.set_delivery(EventsDelivery.poll)
    bus.bind_loop(asyncio.get_running_loop())
    old = [bus.publish("s1", tick(i)) for i in range(3)]
    subscription = bus.subscribe("s1", after_id=old[0].id)
    got = [event async for event in subscription]  # ends by itself
    assert got == old[1:]


async def test_stream_delivery_follows_until_closed() -> None:
    bus = InProcessEventBus()
    bus.set_delivery(EventsDelivery.stream)
    bus.bind_loop(asyncio.get_running_loop())
    old = bus.publish("s1", tick(0))
    subscription = bus.subscribe("s1", after_id=old.id - 1)
    assert await next_event(subscription) == old
    waiting = await started(subscription)
    await asyncio.sleep(POLL_LINGER_SECONDS * 2)
    assert not waiting.done()  # still following
    later = bus.publish("s1", tick(1))
    assert await waiting == later
    await subscription.aclose()
