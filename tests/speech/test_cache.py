"""SpeechCache over a real PriorityWorker, with a small recording text-to-speech engine.

The engine is a collaborator that only honours the TextToSpeech Protocol: it records what it is
asked to say and returns audio that spells out (voice, sentence), so a test can tell which
sentence a piece of audio is. The worker is held busy with a job waiting on a threading.Event
whenever a test needs synthesis to be still queued.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from interview.speech.cache import SpeechCache, sentences_of
from interview.speech.priority_worker import LATER, NOW, PriorityWorker
from interview.speech.sentences import split_sentences
from interview.speech.tts import Speech, TextToSpeech

WAIT = 10.0  # seconds; only ever reached if something is broken
_names = itertools.count()

GREETING = "Hello, and welcome to the interview. Tell me about the last system you built."
FOLLOW_UP = "What would you change about it now? Take your time."
QUESTION = "How do you test a service that depends on a payment provider?"


class RecordingTTS:
    """Deterministic TextToSpeech: audio that encodes (voice, text); can fail on request."""

    name = "recording"
    sample_rate = 24_000
    voices = frozenset({"af_heart", "bf_emma"})
    cache_key = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.fail_once: set[str] = set()
        self._lock = threading.Lock()

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        with self._lock:
            self.calls.append((text, voice))
            if text in self.fail_once:
                self.fail_once.discard(text)
                raise RuntimeError(f"synthesis failed for {text!r}")
        return Speech(audio_for(text, voice), self.cache_key)

    def warmup(self) -> None:
        pass

    def count(self, text: str, voice: str | None = None) -> int:
        return self.calls.count((text, voice))


def audio_for(text: str, voice: str | None) -> NDArray[np.float32]:
    data = np.frombuffer(f"{voice}|{text}".encode(), dtype=np.uint8)
    return (data.astype(np.float32) / 255.0).copy()


class Blocker:
    """A job that holds the worker until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the worker"


@pytest.fixture
def worker() -> Iterator[PriorityWorker]:
    name = f"test-speech-cache-{next(_names)}"
    pool = PriorityWorker(name)
    [thread] = [t for t in threading.enumerate() if t.name == name]
    yield pool
    pool.shutdown()
    thread.join(WAIT)


@pytest.fixture
def tts() -> RecordingTTS:
    return RecordingTTS()


@pytest.fixture
def cache(tts: RecordingTTS, worker: PriorityWorker) -> SpeechCache:
    engine: TextToSpeech = tts  # the Protocol is all SpeechCache may rely on
    return SpeechCache(engine, worker)


def block(worker: PriorityWorker) -> Blocker:
    blocker = Blocker()
    worker.submit(NOW, blocker)
    assert blocker.started.wait(WAIT)
    return blocker


async def drained(worker: PriorityWorker) -> None:
    """Wait until every job queued so far has run (a LATER job queued now runs after them)."""
    await asyncio.wait_for(asyncio.wrap_future(worker.submit(LATER, lambda: None)), WAIT)


async def spoken(
    pieces: list[tuple[str, asyncio.Future[NDArray[np.float32]]]],
) -> list[NDArray[np.float32]]:
    return [await asyncio.wait_for(future, WAIT) for _text, future in pieces]


def assert_audio(audio: list[NDArray[np.float32]], sentences: list[str], voice: str | None) -> None:
    assert len(audio) == len(sentences)
    for got, sentence in zip(audio, sentences, strict=True):
        np.testing.assert_array_equal(got, audio_for(sentence, voice))


async def test_each_sentence_is_spoken_in_order(cache: SpeechCache, tts: RecordingTTS) -> None:
    sentences = split_sentences(GREETING)
    assert len(sentences) == 2

    audio = await spoken(cache.sentences(GREETING, "af_heart"))

    assert_audio(audio, sentences, "af_heart")
    assert cache.sample_rate == tts.sample_rate


async def test_the_same_sentence_and_voice_is_synthesized_once(
    cache: SpeechCache, tts: RecordingTTS
) -> None:
    sentences = split_sentences(GREETING)
    first = await spoken(cache.sentences(GREETING, "af_heart"))
    assert (cache.hits, cache.misses) == (0, len(sentences))

    again = await spoken(cache.sentences(GREETING, "af_heart"))

    assert (cache.hits, cache.misses) == (len(sentences), len(sentences))
    assert sorted(tts.calls) == sorted((s, "af_heart") for s in sentences)
    assert_audio(again, sentences, "af_heart")
    for one, other in zip(first, again, strict=True):
        np.testing.assert_array_equal(one, other)


async def test_a_sentence_shared_by_two_texts_is_synthesized_once(
    cache: SpeechCache, tts: RecordingTTS
) -> None:
    await spoken(cache.sentences(f"{QUESTION} {FOLLOW_UP}", None))
    await spoken(cache.sentences(f"{QUESTION} Take a minute to think.", None))

    assert tts.count(QUESTION) == 1


async def test_two_requests_in_flight_share_one_synthesis(
    cache: SpeechCache, tts: RecordingTTS, worker: PriorityWorker
) -> None:
    blocker = block(worker)
    one = cache.sentences(QUESTION, None)
    two = cache.sentences(QUESTION, None)
    blocker.release.set()

    assert_audio(await spoken(one), [QUESTION], None)
    assert_audio(await spoken(two), [QUESTION], None)
    assert tts.count(QUESTION) == 1
    assert (cache.hits, cache.misses) == (0, 2)  # neither was ready when asked for


async def test_different_voices_are_cached_separately(
    cache: SpeechCache, tts: RecordingTTS
) -> None:
    heart = await spoken(cache.sentences(QUESTION, "af_heart"))
    michael = await spoken(cache.sentences(QUESTION, "am_michael"))
    default = await spoken(cache.sentences(QUESTION, None))
    await spoken(cache.sentences(QUESTION, "am_michael"))

    assert tts.calls == [(QUESTION, "af_heart"), (QUESTION, "am_michael"), (QUESTION, None)]
    assert_audio(heart, [QUESTION], "af_heart")
    assert_audio(michael, [QUESTION], "am_michael")
    assert_audio(default, [QUESTION], None)
    assert cache.hits == 1


async def test_prefetch_makes_later_requests_hits(
    cache: SpeechCache, tts: RecordingTTS, worker: PriorityWorker
) -> None:
    sentences = split_sentences(GREETING)
    cache.prefetch(GREETING, "af_heart")
    await drained(worker)
    assert sorted(tts.calls) == sorted((s, "af_heart") for s in sentences)

    futures = cache.sentences(GREETING, "af_heart")

    assert (cache.hits, cache.misses) == (len(sentences), 0)
    assert_audio(await spoken(futures), sentences, "af_heart")
    assert len(tts.calls) == len(sentences)  # nothing synthesized twice


async def test_prefetch_for_another_voice_is_not_a_hit(
    cache: SpeechCache, tts: RecordingTTS, worker: PriorityWorker
) -> None:
    cache.prefetch(QUESTION, "af_heart")
    await drained(worker)

    await spoken(cache.sentences(QUESTION, "am_michael"))

    assert (cache.hits, cache.misses) == (0, 1)
    assert tts.calls == [(QUESTION, "af_heart"), (QUESTION, "am_michael")]


async def test_a_reply_overtakes_prefetching_and_promotes_a_prefetched_line(
    cache: SpeechCache, tts: RecordingTTS, worker: PriorityWorker
) -> None:
    blocker = block(worker)
    cache.prefetch(GREETING, None)  # two sentences, both LATER
    cache.prefetch(FOLLOW_UP, None)  # two more, LATER
    reply = cache.sentences(FOLLOW_UP, None)  # the same lines are now needed: NOW and SOON
    blocker.release.set()
    await spoken(reply)
    await drained(worker)

    follow_up, greeting = split_sentences(FOLLOW_UP), split_sentences(GREETING)
    # The reply's lines jumped the earlier prefetch, and each line was made once.
    assert [text for text, _voice in tts.calls] == follow_up + greeting


async def test_a_failed_synthesis_is_retried_on_the_next_request(
    cache: SpeechCache, tts: RecordingTTS
) -> None:
    tts.fail_once.add(QUESTION)
    [(_text, failing)] = cache.sentences(QUESTION, None)
    with pytest.raises(RuntimeError, match="synthesis failed"):
        await asyncio.wait_for(failing, WAIT)

    audio = await spoken(cache.sentences(QUESTION, None))

    assert_audio(audio, [QUESTION], None)
    assert tts.count(QUESTION) == 2
    await spoken(cache.sentences(QUESTION, None))
    assert tts.count(QUESTION) == 2  # the good result is kept


async def test_a_failed_prefetch_is_retried_when_the_line_is_needed(
    cache: SpeechCache, tts: RecordingTTS, worker: PriorityWorker
) -> None:
    tts.fail_once.add(QUESTION)
    cache.prefetch(QUESTION, None)
    await drained(worker)

    audio = await spoken(cache.sentences(QUESTION, None))

    assert_audio(audio, [QUESTION], None)
    assert tts.count(QUESTION) == 2


async def test_a_line_whose_reply_was_cancelled_can_be_spoken_again(
    cache: SpeechCache, tts: RecordingTTS, worker: PriorityWorker
) -> None:
    # A reply is being waited for while its synthesis is still queued (the worker is busy with
    # another interview), and the task speaking it is cancelled: the candidate hung up.
    # asyncio.wrap_future passes the cancellation on to the queued synthesis. The same line
    # (a plan's greeting is the same in every interview) must still be speakable later.
    blocker = block(worker)
    futures = cache.sentences(QUESTION, None)

    async def speak() -> None:
        await spoken(futures)

    task = asyncio.create_task(speak())
    for _ in range(3):
        await asyncio.sleep(0)  # let the task start and wait for the queued sentence
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert futures[0][1].cancelled()  # the cancellation reached the sentence's future
    blocker.release.set()
    await drained(worker)

    audio = await spoken(cache.sentences(QUESTION, None))

    assert_audio(audio, [QUESTION], None)
    assert tts.count(QUESTION) == 1


async def test_least_recently_used_entries_are_evicted_at_max_entries(
    tts: RecordingTTS, worker: PriorityWorker
) -> None:
    cache = SpeechCache(tts, worker, max_entries=2)
    a, b, c = "Tell me about your team.", "What did you build there?", "How did you test it?"
    await spoken(cache.sentences(a, None))
    await spoken(cache.sentences(b, None))
    await spoken(cache.sentences(a, None))  # a is now the most recently used
    await spoken(cache.sentences(c, None))  # over the limit: b goes

    await spoken(cache.sentences(a, None))
    await spoken(cache.sentences(c, None))
    assert (tts.count(a), tts.count(b), tts.count(c)) == (1, 1, 1)

    await spoken(cache.sentences(b, None))  # evicted, so made again (and a goes)
    assert (tts.count(a), tts.count(b), tts.count(c)) == (1, 2, 1)
    await spoken(cache.sentences(a, None))
    assert tts.count(a) == 2


def stored(directory: Path) -> list[bytes]:
    """The audio files kept in `directory` (the recording engine's audio spells its text)."""
    return [(np.load(p) * 255).round().astype(np.uint8).tobytes() for p in directory.glob("*.npy")]


async def test_only_fixed_sentences_are_kept_on_disk(
    tts: RecordingTTS, worker: PriorityWorker, tmp_path: Path
) -> None:
    # A language model's line may repeat the candidate's words: it stays in memory only.
    personal = "You said you moved Acme's billing to Kafka in March. Why Kafka?"
    keep = sentences_of([GREETING, QUESTION])
    first = SpeechCache(tts, worker, directory=tmp_path, keep_on_disk=keep.__contains__)
    await spoken(first.sentences(f"{GREETING} {personal}", "af_heart"))
    await spoken(first.sentences(QUESTION, "af_heart"))
    assert len(stored(tmp_path)) == len(split_sentences(GREETING + " " + QUESTION))

    # A new process finds the fixed sentences on disk and must make the personal ones again.
    second = SpeechCache(tts, worker, directory=tmp_path, keep_on_disk=keep.__contains__)
    audio = await spoken(second.sentences(f"{GREETING} {personal}", "af_heart"))
    assert_audio(audio, split_sentences(f"{GREETING} {personal}"), "af_heart")
    assert all(tts.count(s, "af_heart") == 1 for s in split_sentences(GREETING))
    assert all(tts.count(s, "af_heart") == 2 for s in split_sentences(personal))
    assert not any(b"Kafka" in audio for audio in stored(tmp_path))
