"""Several instances on one PostgreSQL behind a round-robin proxy with no stickiness (issue 12):
races between instances, idempotent answers, live events from any instance, and instances
killed (SIGKILL) or stopped (SIGTERM) in the middle of text and spoken interviews.

Real servers (`python app.py`, harness/cluster.py), a real PostgreSQL, Debian's HAProxy, and for
voice real aiortc peers speaking espeak-ng audio. Which instance answered a request through the
proxy is the proxy's X-Served-By header (its server name is the instance's INSTANCE_ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from harness.cluster import Cluster, postgres_for
from harness.haproxy import SERVED_BY
from harness.postgres import PostgresServer
from harness.speech_audio import speech
from harness.sse import Sse, read_events
from harness.voice_client import OfferRejected, VoiceClient
from tests.api.helpers import auth
from tests.e2e.conftest import recall, voice_env

Transcribe = Callable[[int, np.ndarray], str]

# A dead instance is noticed within a few seconds (the defaults, 2 s and 10 s, are for ECS).
CLUSTER_ENV = {
    "INSTANCE_HEARTBEAT_SECONDS": "0.5",
    "INSTANCE_DEAD_AFTER_SECONDS": "3",
    "EVENTS_STREAM_SECONDS": "120",
}
ANSWER = "I moved our billing jobs to a queue with retries so that nothing was lost at night"
RACES = 100
DOUBLE_SUBMITS = 100
CONCURRENT_TRIALS = 8  # races in flight at once: enough to load the instances, not to time out
EVENT_WITHIN_SECONDS = 1.0
ENDED = ("ended", "expired")
PLAN_QUESTIONS = 5  # backend-engineer-screen, the default plan: five long answers end it


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = postgres_for(instances=5)  # the text cluster's three and the voice cluster's two
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def text_cluster_started(postgres, tmp_path_factory) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster-text"), size=3, env=CLUSTER_ENV, postgres=postgres
    )
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def text_cluster(text_cluster_started: Cluster) -> Cluster:
    """Three text-only instances, all in the proxy's rotation (a test may have killed one)."""
    text_cluster_started.ensure_all_up()
    return text_cluster_started


# --- HTTP: every response is recorded, to count the 5xx and see which instance answered.


@dataclass
class Call:
    via: str  # "proxy", or the instance addressed directly
    method: str
    path: str
    status: int  # 0: no response (the connection failed or was reset)
    served_by: str | None  # the proxy's X-Served-By, or the instance addressed directly
    sent_at: float
    body: str = ""
    retry_after: str | None = None


@dataclass
class Calls:
    made: list[Call] = field(default_factory=list)

    def server_errors(self) -> list[Call]:
        return [c for c in self.made if c.status >= 500]

    def through_proxy(self) -> list[Call]:
        """The calls made through the proxy, in the order they were sent."""
        return sorted((c for c in self.made if c.via == "proxy"), key=lambda c: c.sent_at)

    def client(self, base_url: str, instance: str | None = None) -> httpx.AsyncClient:
        """An HTTP client whose every response lands in `made` (`instance`: addressed directly)."""

        async def on_request(request: httpx.Request) -> None:
            request.extensions["sent_at"] = time.monotonic()

        async def on_response(response: httpx.Response) -> None:
            if response.status_code >= 500:
                await response.aread()
            self.made.append(
                Call(
                    instance or "proxy",
                    response.request.method,
                    response.request.url.path,
                    response.status_code,
                    response.headers.get(SERVED_BY, instance),
                    response.request.extensions.get("sent_at", 0.0),
                    response.text[:300] if response.status_code >= 500 else "",
                    response.headers.get("retry-after"),
                )
            )

        return httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(30, read=60),
            trust_env=False,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
            event_hooks={"request": [on_request], "response": [on_response]},
        )


@contextlib.asynccontextmanager
async def clients(
    cluster: Cluster, calls: Calls
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, httpx.AsyncClient]]]:
    """(through the proxy, {instance: directly to it})."""
    async with contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(calls.client(cluster.api))
        direct = {
            name: await stack.enter_async_context(calls.client(cluster[name].api, name))
            for name in cluster.names
        }
        yield proxy, direct


async def start(http: httpx.AsyncClient, **body: Any) -> tuple[str, dict[str, str]]:
    response = await http.post("/start", json={"user_id": "many-instances", **body})
    assert response.status_code == 201, response.text
    return response.json()["session_id"], auth(response.json()["token"])


def answer_headers(headers: dict[str, str], key: str | None) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key} if key else headers


async def transcript(http: httpx.AsyncClient, sid: str, headers: dict[str, str]) -> list[dict]:
    response = await http.get(f"/{sid}/transcript", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["turns"]


async def results(
    http: httpx.AsyncClient, sid: str, headers: dict[str, str], within: float = 20
) -> httpx.Response:
    """/results once it is no longer 202 (pending), or the last 202 after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        response = await http.get(f"/{sid}/results", headers=headers)
        if response.status_code != 202 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


def sequence_problems(turns: list[dict]) -> list[str]:
    """What is wrong with a transcript's order: indexes with gaps or repeats, two turns of one
    side in a row, a question asked twice."""
    problems = []
    kept = [t for t in turns if t.get("interruption") != "withdrawn"]
    if [t["index"] for t in turns] != list(range(len(turns))):
        problems.append(f"indexes {[t['index'] for t in turns]}")
    roles = [t["role"] for t in kept]
    if any(a == b for a, b in itertools.pairwise(roles)):
        problems.append(f"roles {roles}")
    asked = [t["text"] for t in kept if t["role"] == "interviewer"]
    if len(set(asked)) != len(asked):
        problems.append(f"a line said twice: {asked}")
    return problems


def report_of(failed: list[list[str]], shown: int = 8) -> str:
    """The problems of the first `shown` failed trials, one a line."""
    return "\n".join(problem for problems in failed[:shown] for problem in problems)


def five_xx_report(calls: Calls) -> str:
    errors = calls.server_errors()
    shown = "\n".join(
        f"{c.status} {c.method} {c.path} via {c.via} on {c.served_by}: {c.body}" for c in errors
    )
    return f"{len(errors)} responses 5xx:\n{shown[:3000]}"


# --- Races between instances.


async def test_end_racing_the_first_answer_never_leaves_a_session_stuck(text_cluster: Cluster):
    """POST /start; at the same instant the first answer on one instance and /end on another.
    Whichever wins, the session ends for good: ended status, results ready (never a 409
    interview_running for ever), answers refused after, and the report has every answer that
    was accepted."""
    calls = Calls()
    names = text_cluster.names
    async with clients(text_cluster, calls) as (proxy, direct):
        gate = asyncio.Semaphore(CONCURRENT_TRIALS)

        async def race(i: int) -> list[str]:
            async with gate:
                sid, headers = await start(proxy)
                on_a, on_b = direct[names[i % 3]], direct[names[(i + 1) % 3]]
                # Either may go first, by up to 4 ms: both orders and a dead heat.
                lead = ((i % 5) - 2) * 0.002

                async def answer() -> httpx.Response:
                    await asyncio.sleep(max(0.0, lead))
                    return await on_a.post(
                        f"/{sid}/transcript", json={"text": ANSWER}, headers=headers
                    )

                async def end() -> httpx.Response:
                    await asyncio.sleep(max(0.0, -lead))
                    return await on_b.post(f"/{sid}/end", headers=headers)

                answered, ended = await asyncio.gather(answer(), end())
                found = await race_problems(proxy, sid, headers, answered, ended)
                return [f"{sid} (race {i}): {p}" for p in found]

        failed = [found for found in await asyncio.gather(*map(race, range(RACES))) if found]
    assert not calls.server_errors(), five_xx_report(calls)
    assert not failed, f"{len(failed)} of {RACES} races went wrong:\n" + report_of(failed)


async def race_problems(
    proxy: httpx.AsyncClient,
    sid: str,
    headers: dict[str, str],
    answered: httpx.Response,
    ended: httpx.Response,
) -> list[str]:
    problems = []
    if ended.status_code != 200:
        problems.append(f"/end {ended.status_code} {ended.text}")
    if answered.status_code not in (200, 409):
        problems.append(f"answer {answered.status_code} {answered.text}")
    status = (await proxy.get(f"/{sid}/status", headers=headers)).json()
    if status["status"] not in ENDED or status["ended_at"] is None:
        problems.append(f"stuck: status {status['status']!r}, ended_at {status['ended_at']}")
    again = await proxy.post(f"/{sid}/end", headers=headers)
    if again.status_code != 200 or again.json()["status"] not in ENDED:
        problems.append(f"a second /end: {again.status_code} {again.text}")
    late = await proxy.post(f"/{sid}/transcript", json={"text": ANSWER}, headers=headers)
    if late.status_code != 409:
        problems.append(f"an answer after the end: {late.status_code}")
    report = await results(proxy, sid, headers)
    turns = await transcript(proxy, sid, headers)
    answers = [t["text"] for t in turns if t["role"] == "candidate"]
    expected = [ANSWER] if answered.status_code == 200 else []
    if answers != expected:
        problems.append(f"answer {answered.status_code} but the transcript holds {answers}")
    problems += sequence_problems(turns)
    if report.status_code != 200 or report.json().get("status") != "ready":
        problems.append(f"results {report.status_code} {report.text[:200]}")
    elif report.json()["metrics"]["candidate_turns"] != len(answers):
        problems.append(
            f"the report has {report.json()['metrics']['candidate_turns']} answers, "
            f"the transcript {len(answers)}"
        )
    return problems


@pytest.mark.parametrize("keyed", [True, False], ids=["same-key", "no-key"])
async def test_a_double_submit_split_across_instances(text_cluster: Cluster, keyed: bool):
    """The same answer posted twice at once on two instances (a double click, a retry that
    raced its original). With one Idempotency-Key: one answer stored, both requests get its
    outcome, and so does a later retry on a third instance. Without a key: two answers, one
    after the other, to two different questions. Never a question asked twice, never a 5xx."""
    calls = Calls()
    names = text_cluster.names
    async with clients(text_cluster, calls) as (proxy, direct):
        gate = asyncio.Semaphore(CONCURRENT_TRIALS)

        async def submit_twice(i: int) -> list[str]:
            async with gate:
                sid, headers = await start(proxy)
                key = str(uuid.uuid4()) if keyed else None
                sent = answer_headers(headers, key)
                first, second = await asyncio.gather(
                    *(
                        direct[names[(i + k) % 3]].post(
                            f"/{sid}/transcript", json={"text": ANSWER}, headers=sent
                        )
                        for k in (0, 1)
                    )
                )
                found = await double_submit_problems(
                    direct[names[(i + 2) % 3]], sid, headers, key, first, second
                )
                return [f"{sid} (submit {i}): {p}" for p in found]

        trials = await asyncio.gather(*map(submit_twice, range(DOUBLE_SUBMITS)))
    failed = [found for found in trials if found]
    assert not calls.server_errors(), five_xx_report(calls)
    assert not failed, (
        f"{len(failed)} of {DOUBLE_SUBMITS} double submits went wrong:\n" + report_of(failed)
    )


async def double_submit_problems(
    third: httpx.AsyncClient,
    sid: str,
    headers: dict[str, str],
    key: str | None,
    first: httpx.Response,
    second: httpx.Response,
) -> list[str]:
    problems = []
    if (first.status_code, second.status_code) != (200, 200):
        problems.append(f"statuses {first.status_code} {second.status_code}: {second.text}")
        return problems
    turns = await transcript(third, sid, headers)
    problems += sequence_problems(turns)
    answers = [t for t in turns if t["role"] == "candidate"]
    outcomes = [
        (r.json()["candidate_turn"]["index"], r.json()["interviewer_turn"]["index"])
        for r in (first, second)
    ]
    if key is None:
        if len(answers) != 2 or len(turns) != 5:
            problems.append(f"without a key: {len(answers)} answers, {len(turns)} turns")
        if outcomes[0] == outcomes[1]:
            problems.append(f"two answers, one outcome {outcomes}")
        return problems
    if len(answers) != 1 or len(turns) != 3:
        problems.append(f"one key: {len(answers)} answers stored, {len(turns)} turns")
    if first.json() != second.json():
        problems.append(f"one key, two outcomes: {outcomes}")
    retry = await third.post(
        f"/{sid}/transcript", json={"text": ANSWER}, headers=answer_headers(headers, key)
    )
    if retry.status_code != 200 or retry.json() != first.json():
        problems.append(f"a later retry: {retry.status_code} {retry.text[:200]}")
    reused = await third.post(
        f"/{sid}/transcript", json={"text": "another answer"}, headers=answer_headers(headers, key)
    )
    code = reused.json().get("error", {}).get("code") if reused.status_code == 422 else None
    if code != "idempotency_key_reused":
        problems.append(f"the key with other text: {reused.status_code} {reused.text[:200]}")
    if len(await transcript(third, sid, headers)) != len(turns):
        problems.append("the retries stored something")
    return problems


# --- Live events from any instance.


@dataclass
class Subscriber:
    """One /events response, read as it arrives: (arrival time, event)."""

    received: list[tuple[float, Sse]] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    served_by: str | None = None

    async def follow(
        self, http: httpx.AsyncClient, sid: str, headers: dict[str, str], after: str | None = None
    ) -> None:
        sent = {**headers, "Last-Event-ID": after} if after else headers
        async with http.stream("GET", f"/{sid}/events", headers=sent) as response:
            assert response.status_code == 200, await response.aread()
            self.served_by = response.headers.get(SERVED_BY)
            self.opened.set()
            async for event in read_events(response):
                self.received.append((time.monotonic(), event))
                self.changed.set()

    def turns(self) -> list[tuple[int, str]]:
        return [(e.data["index"], e.data["role"]) for _, e in self.received if e.event == "turn"]

    def arrival_of_turn(self, index: int) -> float | None:
        for arrived, event in self.received:
            if event.event == "turn" and event.data["index"] == index:
                return arrived
        return None

    async def wait_for_turns(self, indexes: tuple[int, ...], within: float) -> bool:
        return await self.wait_for(
            lambda: all(self.arrival_of_turn(i) is not None for i in indexes), within
        )

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> bool:
        """Until `predicate()` holds (True), or `within` seconds passed (False)."""
        deadline = time.monotonic() + within
        while not predicate():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
        return True


def ids(events: list[Sse]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


async def test_a_subscriber_gets_every_event_from_another_instance_in_order(
    text_cluster: Cluster,
):
    """Answers on node-2; one subscriber on node-1 all along gets every turn within a second
    of the answer's response, in order, then the end and the results. Another subscriber starts
    on node-3 and moves to node-1 with Last-Event-ID half-way: it misses nothing and gets
    nothing twice."""
    calls = Calls()
    a, b, c = text_cluster.names
    async with clients(text_cluster, calls) as (_proxy, direct):
        sid, headers = await start(direct[b])
        steady, moving = Subscriber(), Subscriber()
        tasks = [
            asyncio.create_task(steady.follow(direct[a], sid, headers)),
            asyncio.create_task(moving.follow(direct[c], sid, headers)),
        ]
        try:
            await asyncio.wait_for(asyncio.gather(steady.opened.wait(), moving.opened.wait()), 10)
            late: list[str] = []
            for number in range(1, 4):
                response = await direct[b].post(
                    f"/{sid}/transcript", json={"text": f"{ANSWER} ({number})"}, headers=headers
                )
                assert response.status_code == 200, response.text
                returned = time.monotonic()
                indexes = (2 * number - 1, 2 * number)
                await steady.wait_for_turns(indexes, EVENT_WITHIN_SECONDS)
                for index in indexes:
                    arrived = steady.arrival_of_turn(index)
                    if arrived is None or arrived - returned > EVENT_WITHIN_SECONDS:
                        late.append(f"turn {index}: {arrived and arrived - returned}")
            assert not late, f"turn events later than {EVENT_WITHIN_SECONDS} s on {a}: {late}"
            # The moving subscriber leaves node-3 once it has what was said so far.
            assert await moving.wait_for(lambda: len(moving.turns()) >= 7, 5), moving.turns()
            tasks[1].cancel()
            first_part = [e for _, e in moving.received]
            # Two answers and the end while it is away; then it comes back on node-1.
            for number in (4, 5):
                response = await direct[b].post(
                    f"/{sid}/transcript", json={"text": f"{ANSWER} ({number})"}, headers=headers
                )
                assert response.status_code == 200, response.text
            assert (await direct[b].post(f"/{sid}/end", headers=headers)).status_code == 200
            back = Subscriber()
            last_seen = first_part[-1].id
            await asyncio.wait_for(back.follow(direct[a], sid, headers, after=last_seen), 20)
            # The steady one's stream ends too, after the results event.
            await asyncio.wait_for(tasks[0], 20)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        turns = await transcript(direct[c], sid, headers)
    everything = [e for _, e in steady.received]
    assert "results" in [e.event for e in everything], [e.event for e in everything]
    assert ids(everything) == sorted(set(ids(everything))), "out of order or repeated"
    assert steady.turns() == [(t["index"], t["role"]) for t in turns]
    assert sequence_problems(turns) == []
    # The moved subscriber: what it had, then exactly what came after, as the steady one saw it.
    second_part = [e for _, e in back.received]
    assert ids(first_part) + ids(second_part) == ids(everything)
    assert [e.data for e in first_part + second_part] == [e.data for e in everything]
    assert not calls.server_errors(), five_xx_report(calls)


# --- An instance killed in the middle of a text interview.


async def answer_until_stored(
    http: httpx.AsyncClient,
    sid: str,
    headers: dict[str, str],
    text: str,
    key: str,
    attempts: int = 40,
) -> httpx.Response:
    """What the web client does: the same Idempotency-Key on every retry, after a network
    error, a 502/503 (Retry-After) or a 202 reply_pending."""
    for _ in range(attempts):
        try:
            response = await http.post(
                f"/{sid}/transcript", json={"text": text}, headers=answer_headers(headers, key)
            )
        except httpx.TransportError:
            await asyncio.sleep(0.2)
            continue
        if response.status_code in (202, 502, 503):
            await asyncio.sleep(min(2.0, float(response.headers.get("retry-after", 0.2))))
            continue
        return response
    raise AssertionError(f"no answer stored after {attempts} attempts")


async def stored(database_url: str, text: str, within: float = 30) -> bool:
    """Until a turn with `text` is in the database (polled every 2 ms): the moment an answer is
    committed, whatever the instance that took it does next."""
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            found = await conn.execute("SELECT 1 FROM interview_turns WHERE text = %s", (text,))
            if await found.fetchone():
                return True
            await asyncio.sleep(0.002)
    return False


# When each instance is killed, relative to the answer in flight to it.
KILLED_BEFORE_IT_ARRIVES = "before it arrives"  # nothing was stored
KILLED_ONCE_STORED = "once the answer is stored"  # the reply may not be: the retry repairs it
KILLED_AFTER_REPLYING = "after replying, the response lost"  # the retry returns what is stored


async def test_sigkill_of_an_instance_mid_text_interview_loses_nothing(text_cluster: Cluster):
    """Each instance in turn is killed while an answer is in flight to it: before the answer
    arrives, the moment it is committed, and after the reply with the response lost on the way.
    The client retries through the proxy with the same key and the interview goes on, while the
    instance is down and once it is back: every answer once, in order, each with the
    interviewer's reply, no line said twice, the report complete, never a 5xx."""
    calls = Calls()
    said: list[str] = []
    database_url = text_cluster.database_url
    assert database_url is not None
    moments = (KILLED_BEFORE_IT_ARRIVES, KILLED_ONCE_STORED, KILLED_AFTER_REPLYING)
    async with clients(text_cluster, calls) as (proxy, direct):
        sid, headers = await start(proxy)
        for victim, moment in zip(text_cluster.names, moments, strict=True):
            text = f"{ANSWER} ({victim} killed {moment})"
            key = str(uuid.uuid4())
            in_flight = asyncio.create_task(
                direct[victim].post(
                    f"/{sid}/transcript", json={"text": text}, headers=answer_headers(headers, key)
                )
            )
            if moment == KILLED_ONCE_STORED:
                assert await stored(database_url, text), f"{victim} never stored the answer"
            elif moment == KILLED_AFTER_REPLYING:
                assert (await in_flight).status_code == 200
            text_cluster.kill(victim, wait_down=False)
            with contextlib.suppress(httpx.TransportError):
                await in_flight
            said.append(text)
            response = await answer_until_stored(proxy, sid, headers, text, key)
            if response.status_code != 200:
                stored_answers = [
                    t["text"]
                    for t in await transcript(proxy, sid, headers)
                    if t["role"] != "interviewer"
                ]
                raise AssertionError(f"{response.text}; said {said}; stored {stored_answers}")
            assert response.json()["candidate_turn"]["text"] == text
            # The interview goes on through the proxy while the victim is down ...
            if len(said) < PLAN_QUESTIONS:  # (the fifth answer ends the interview)
                said.append(f"{ANSWER} ({victim} down)")
                reply = await answer_until_stored(proxy, sid, headers, said[-1], str(uuid.uuid4()))
                assert reply.status_code == 200, reply.text
            # ... and once it is back in the rotation.
            await asyncio.to_thread(text_cluster.restart, victim)
        turns = await transcript(proxy, sid, headers)
        report = await results(proxy, sid, headers)
    assert [t["text"] for t in turns if t["role"] == "candidate"] == said
    assert sequence_problems(turns) == []
    assert report.status_code == 200, report.text
    assert report.json()["metrics"]["candidate_turns"] == len(said)
    assert not calls.server_errors(), five_xx_report(calls)


# --- Spoken interviews: the media stays with the instance that took the offer (its owner),
# every REST call may land anywhere.

GREETING = "Hello, welcome to your practice interview. Tell me about a project you are proud of."
NEXT_QUESTION = "How do you debug a failing service?"
CLOSING = "Thank you, that is all for today. Goodbye."
FIRST_ANSWER = "I built a billing service in Python and I made it reliable with careful tests."
SECOND_ANSWER = "I read the logs and the metrics first and then I reproduce the failure locally."
VOICE_WAIT = 60  # two cores shared by two voice instances, PostgreSQL and the test itself
# A line may pause between its sentences when the cores are busy: it is over after 2 s of silence.
LINE_SILENCE = 2.0


@pytest.fixture(scope="module")
def voice_cluster_started(postgres, tmp_path_factory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster-voice")
    env = {
        **voice_env(directory),  # its DATABASE_URL gives way to the cluster's
        **CLUSTER_ENV,
        # A live call is kept this long after SIGTERM (the drain), longer than a test's call.
        "SHUTDOWN_GRACE_SECONDS": "90",
    }
    cluster = Cluster(directory, size=2, env=env, postgres=postgres, start_timeout=240)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def voice_cluster(voice_cluster_started: Cluster) -> Cluster:
    """Two voice instances (the speech models loaded), both in the proxy's rotation."""
    voice_cluster_started.ensure_all_up()
    return voice_cluster_started


@dataclass
class Conversation:
    sid: str
    headers: dict[str, str]
    token: str
    client: VoiceClient
    owner: str  # the instance that took the offer


async def call(cluster: Cluster, calls: Calls, http: httpx.AsyncClient) -> Conversation:
    """POST /start and a voice connection, both through the proxy."""
    response = await http.post(
        "/start", json={"user_id": "many-voice", "plan_id": "quick-engineer"}
    )
    assert response.status_code == 201, response.text
    sid, token = response.json()["session_id"], response.json()["token"]
    client = await VoiceClient.connect(cluster.api, sid, token, http=http, connect_timeout=30)
    offers = [c for c in calls.made if c.path.endswith("/rtc/offer") and c.status == 200]
    owner = offers[-1].served_by
    assert owner in cluster.names, offers
    return Conversation(sid, auth(token), token, client, owner)


async def say_and_hear(
    conversation: Conversation, answer: str, expected: str, transcribe: Transcribe
) -> None:
    """Say `answer` and hear the interviewer's next line, which should end with `expected`.
    The closing line is heard whole: the owner hangs up after it."""
    client = conversation.client
    said = await client.say(speech(answer))
    if expected == CLOSING:
        await asyncio.wait_for(client.closed.wait(), VOICE_WAIT)
        rate, audio = client.received_audio(since=said.speech_ended_at)
    else:
        reply = await client.wait_for_reply(
            after=said.speech_ended_at, timeout=VOICE_WAIT, silence=LINE_SILENCE
        )
        rate, audio = reply.sample_rate, reply.audio
    heard = transcribe(rate, audio)
    assert recall(expected, heard) >= 0.6, heard


def event_problems(subscriber: Subscriber, turns: list[dict]) -> list[str]:
    """Whether a subscriber got the whole interview in order: every turn (its final version as
    the transcript has it), ids rising, the end and the results."""
    problems = []
    events = [e for _, e in subscriber.received]
    if ids(events) != sorted(set(ids(events))):
        problems.append(f"ids out of order or repeated: {ids(events)}")
    final: dict[int, str] = {}
    for event in events:
        if event.event == "turn":
            final[event.data["index"]] = event.data["text"]
    if final != {t["index"]: t["text"] for t in turns}:
        problems.append(f"turns {sorted(final)} of {[t['index'] for t in turns]}")
    # A turn published again (its accurate text, a cut line) replaces it where it was first.
    indexes = list(dict.fromkeys(i for i, _ in subscriber.turns()))
    if indexes != sorted(indexes):
        problems.append(f"turns out of order: {indexes}")
    kinds = [e.event for e in events]
    if "results" not in kinds or not any(
        e.event == "status" and e.data["status"] == "ended" for e in events
    ):
        problems.append(f"no end or no results: {kinds}")
    return problems


async def test_a_spoken_interview_with_every_rest_call_on_another_instance(
    voice_cluster: Cluster, transcribe: Transcribe
):
    """A whole spoken interview through the proxy, round robin over two instances: each REST
    call lands on the other instance than the one before (the proxy's X-Served-By says which).
    The media stays with the instance that took the offer; the SDP answer and ICE candidates
    posted to the other are relayed to it. Both instances' subscribers get every event in
    order; the transcript and the report are complete."""
    calls = Calls()
    async with clients(voice_cluster, calls) as (proxy, direct):
        conversation = await call(voice_cluster, calls, proxy)
        client, sid, headers = conversation.client, conversation.sid, conversation.headers
        other = voice_cluster.others(conversation.owner)[0]
        subscribers = {"proxy": Subscriber(), other: Subscriber()}
        following = [
            asyncio.create_task(subscribers["proxy"].follow(proxy, sid, headers)),
            asyncio.create_task(subscribers[other].follow(direct[other], sid, headers)),
        ]
        try:
            await asyncio.wait_for(subscribers["proxy"].opened.wait(), 10)
            # Signaling calls that only the owner can answer, made twice so that one lands on
            # the other instance: the SDP answer and the end-of-candidates marker.
            answers = [await proxy.post(f"/{sid}/rtc/answer", headers=headers) for _ in range(2)]
            assert [r.status_code for r in answers] == [200, 200], answers[-1].text
            assert answers[0].json() == answers[1].json()
            assert answers[0].json()["type"] == "answer"
            for _ in range(2):
                marker = await proxy.post(
                    f"/{sid}/rtc/ice-candidate",
                    json={"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0},
                    headers=headers,
                )
                assert marker.status_code == 200, marker.text
            greeting = await client.wait_for_reply(timeout=VOICE_WAIT, silence=LINE_SILENCE)
            heard = transcribe(greeting.sample_rate, greeting.audio)
            assert recall(GREETING, heard) >= 0.3 and "welcome" in heard.lower(), heard
            live = (await proxy.get(f"/{sid}/status", headers=headers)).json()
            assert (live["status"], live["connection_state"]) == ("active", "connected")
            await say_and_hear(conversation, FIRST_ANSWER, NEXT_QUESTION, transcribe)
            assert len(await transcript(proxy, sid, headers)) >= 3
            # The plan is done: the owner hangs up after its closing line.
            await say_and_hear(conversation, SECOND_ANSWER, CLOSING, transcribe)
            ended = (await proxy.get(f"/{sid}/status", headers=headers)).json()
            assert (ended["status"], ended["end_reason"]) == ("ended", "plan_finished")
            report = await results(proxy, sid, headers)
            turns = await transcript(proxy, sid, headers)
            await asyncio.wait_for(asyncio.gather(*following), 20)  # both end after "results"
        finally:
            await client.close()
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
    sequence = [(c.method, c.path.rsplit("/", 1)[-1], c.served_by) for c in calls.through_proxy()]
    repeats = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(sequence)) if a[2] == b[2]]
    assert not repeats, f"two calls in a row on one instance: {repeats} in {sequence}"
    assert {c.served_by for c in calls.through_proxy()} == set(voice_cluster.names)
    kept = [t for t in turns if t.get("interruption") != "withdrawn"]
    assert [t["role"] for t in kept] == ["interviewer", "candidate"] * 2 + ["interviewer"]
    assert sequence_problems(turns) == []
    assert kept[-1]["text"].endswith(CLOSING)
    assert recall(FIRST_ANSWER, kept[1]["text"]) >= 0.8, kept[1]["text"]
    assert recall(SECOND_ANSWER, kept[3]["text"]) >= 0.8, kept[3]["text"]
    for name, subscriber in subscribers.items():
        assert event_problems(subscriber, turns) == [], name
    assert report.status_code == 200, report.text
    assert report.json()["metrics"]["candidate_turns"] == 2
    assert all(q["answered"] for q in report.json()["questions"]), report.json()["questions"]
    assert not calls.server_errors(), five_xx_report(calls)


async def reconnect(
    cluster: Cluster, calls: Calls, http: httpx.AsyncClient, conversation: Conversation
) -> Conversation:
    """What the web client does when its connection dies: offer again (through the proxy)
    until an instance takes it; 503 (the owner is not known dead yet) says when to retry."""
    deadline = time.monotonic() + 30
    while True:
        try:
            client = await VoiceClient.connect(
                cluster.api, conversation.sid, conversation.token, http=http, connect_timeout=30
            )
            break
        except OfferRejected as refused:
            if refused.status_code not in (409, 503) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    owner = [c for c in calls.made if c.path.endswith("/rtc/offer") and c.status == 200][-1]
    return Conversation(
        conversation.sid, conversation.headers, conversation.token, client, str(owner.served_by)
    )


async def test_sigkill_of_the_owner_mid_voice_interview(
    voice_cluster: Cluster, transcribe: Transcribe
):
    """The instance that holds the call dies (SIGKILL). The client offers again through the
    proxy; the other instance takes the session once the owner's heartbeat is gone, and the
    interview goes on from the last committed turn: the interviewer says its last line again,
    nothing is lost or doubled, and the rest of the interview is normal."""
    calls = Calls()
    async with clients(voice_cluster, calls) as (proxy, _direct):
        first = await call(voice_cluster, calls, proxy)
        second: Conversation | None = None
        try:
            await first.client.wait_for_reply(timeout=VOICE_WAIT, silence=LINE_SILENCE)
            await say_and_hear(first, FIRST_ANSWER, NEXT_QUESTION, transcribe)
            before = await transcript(proxy, first.sid, first.headers)
            await asyncio.to_thread(voice_cluster.kill, first.owner)
            await first.client.close()  # what a browser does once ICE says the peer is gone
            second = await reconnect(voice_cluster, calls, proxy, first)
            assert second.owner != first.owner
            again = await second.client.wait_for_reply(timeout=VOICE_WAIT, silence=LINE_SILENCE)
            heard = transcribe(again.sample_rate, again.audio)
            assert recall(before[-1]["text"], heard) >= 0.6, heard  # the last line, again
            assert await transcript(proxy, first.sid, first.headers) == before
            await say_and_hear(second, SECOND_ANSWER, CLOSING, transcribe)
            ended = (await proxy.get(f"/{first.sid}/status", headers=first.headers)).json()
            turns = await transcript(proxy, first.sid, first.headers)
        finally:
            await first.client.close()
            if second is not None:
                await second.client.close()
    assert (ended["status"], ended["end_reason"]) == ("ended", "plan_finished")
    assert turns[: len(before)] == before
    assert [t["role"] for t in turns[len(before) :]] == ["candidate", "interviewer"]
    assert sequence_problems(turns) == []
    # Until the owner is known dead an offer elsewhere may be refused: 503 with Retry-After (the
    # client offers again), nothing else.
    unexpected = [
        c
        for c in calls.server_errors()
        if not (c.status == 503 and c.path.endswith("/rtc/offer") and c.retry_after)
    ]
    assert not unexpected, five_xx_report(calls)


async def test_sigterm_of_the_owner_during_a_live_voice_interview(
    voice_cluster: Cluster, transcribe: Transcribe
):
    """The owner is told to stop (a deploy) while its call is live. Every request already sent
    to it gets its response, requests through the proxy go on without an error, the interview
    finishes normally on the draining owner, then it exits, and an /events stream still open on
    it then ends cleanly."""
    calls = Calls()
    async with clients(voice_cluster, calls) as (proxy, direct):
        conversation = await call(voice_cluster, calls, proxy)
        sid, headers, owner = conversation.sid, conversation.headers, conversation.owner
        # Another interview, in text, followed on the owner: its stream is open at the exit.
        other_sid, other_headers = await start(direct[owner])
        open_stream = Subscriber()
        following = asyncio.create_task(open_stream.follow(direct[owner], other_sid, other_headers))
        try:
            await conversation.client.wait_for_reply(timeout=VOICE_WAIT, silence=LINE_SILENCE)
            await asyncio.wait_for(open_stream.opened.wait(), 10)

            async def ask(http: httpx.AsyncClient, path: str) -> int | str:
                try:
                    return (await http.get(f"/{sid}/{path}", headers=headers)).status_code
                except httpx.TransportError as exc:
                    return type(exc).__name__

            # Requests in flight to the owner when the signal comes ...
            in_flight = [
                asyncio.create_task(ask(direct[owner], path))
                for path in ("status", "transcript") * 20
            ]
            await asyncio.sleep(0.005)
            voice_cluster.terminate(owner)
            # ... and requests through the proxy all along the drain.
            proxied = []
            for _ in range(20):
                proxied.append(await ask(proxy, "status"))
                await asyncio.sleep(0.05)
            sent_before = await asyncio.gather(*in_flight)
            await say_and_hear(conversation, FIRST_ANSWER, NEXT_QUESTION, transcribe)
            await say_and_hear(conversation, SECOND_ANSWER, CLOSING, transcribe)
            code = await asyncio.to_thread(voice_cluster.wait_exit, owner, 60)
            stream_end = await asyncio.wait_for(
                asyncio.gather(following, return_exceptions=True), 10
            )
            ended = (await proxy.get(f"/{sid}/status", headers=headers)).json()
        finally:
            await conversation.client.close()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    assert sent_before == [200] * len(sent_before), f"requests sent before SIGTERM: {sent_before}"
    assert proxied == [200] * len(proxied), f"requests through the proxy: {proxied}"
    assert (ended["status"], ended["end_reason"]) == ("ended", "plan_finished")
    assert code in (0, -signal.SIGTERM), code
    assert stream_end == [None], f"an /events stream open at the exit broke: {stream_end}"
    assert not calls.server_errors(), five_xx_report(calls)
