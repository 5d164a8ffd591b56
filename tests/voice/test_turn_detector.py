"""TurnDetector on real silero VAD, fed real espeak-ng speech in 20 ms chunks.

Time is a synthetic clock: every 20 ms chunk advances `now` by 0.02 s, starting from an
arbitrary epoch, so every timing below is about positions in the audio, never about how fast
this machine runs. The test audio is espeak speech separated by digital silence (exact zeros),
so the nonzero part of a turn's audio can be compared sample for sample with the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from harness.speech_audio import Int16Array, join, resample, speech, speech_bounds
from interview.speech.model_files import ModelPaths, models_dir_from_env
from interview.speech.vad import SileroVAD
from interview.voice.turn_detector import DetectorOptions, Turn, TurnDetector, TurnEvent

RATE = 16_000
CHUNK = 320  # 20 ms at 16 kHz
STEP = CHUNK / RATE
EPOCH = 1_700_000_000.0  # the synthetic clock's reading before the first chunk
TIMING_TOLERANCE = 0.15
# The mechanics with a fixed end of turn, as when nothing judges a pause sooner.
FIXED = DetectorOptions(end_silence=0.8)

FIRST_PART = "I worked on the payments team"
SECOND_PART = "for about three years."
ANSWER = "I built our payments service and ran it for three years."
OTHER_ANSWER = "Mostly Python, with some Go for the streaming parts."


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    model = SileroVAD(ModelPaths(models_dir_from_env()).silero_vad)
    model.load()
    return model


def speech16(text: str, rate_wpm: int = 160) -> Int16Array:
    """espeak speech resampled to the detector's 16 kHz."""
    return resample(speech(text, rate_wpm=rate_wpm), 48_000, RATE)


def audio16(*parts: Int16Array | float) -> Int16Array:
    """Clips (16 kHz arrays) and pauses (seconds of digital silence) one after another."""
    return join(*parts, sample_rate=RATE)


@dataclass
class Run:
    """What the detector reported while the audio went by, in synthetic-clock seconds."""

    events: list[tuple[float, TurnEvent]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    onsets: list[float] = field(default_factory=list)  # kept apart: most tests are about turns

    def kinds(self) -> list[TurnEvent]:
        return [event for _at, event in self.events]

    def times(self, kind: TurnEvent) -> list[float]:
        return [at for at, event in self.events if event is kind]


def feed(detector: TurnDetector, audio: Int16Array, start_chunk: int = 0) -> Run:
    """Feed `audio` in 20 ms chunks; take the turn whenever one ends, as the handler does."""
    run = Run()
    for i, offset in enumerate(range(0, len(audio), CHUNK), start=start_chunk):
        now = clock(i + 1)
        event = detector.feed(audio[offset : offset + CHUNK], now=now)
        if event is TurnEvent.onset:
            run.onsets.append(now)
        elif event is not None:
            run.events.append((now, event))
        if event is TurnEvent.turn_ended:
            run.turns.append(detector.take_turn(now=now))
    return run


def clock(chunks: int) -> float:
    """The synthetic clock after `chunks` chunks have arrived."""
    return EPOCH + chunks * STEP


def at(sample: int) -> float:
    """The synthetic clock at which the sample with this index arrived."""
    return EPOCH + sample / RATE


def bounds(audio: Int16Array) -> tuple[float, float]:
    """Where the speech is in `audio`, on the synthetic clock (energy, 10 ms windows)."""
    found = speech_bounds(audio, RATE)
    assert found is not None
    return at(found[0]), at(found[1])


def nonzero(audio: Int16Array) -> Int16Array:
    return np.trim_zeros(audio)


# Answers with a thinking pause in the middle; silero judges a clip differently depending on
# where its 32 ms frames fall, so each is tried at every 4 ms step of frame alignment.
PAUSED_ANSWERS = [
    (FIRST_PART, SECOND_PART),
    ("We moved the billing jobs", "onto a queue."),
    ("The hardest part was", "the data migration."),
    ("I think", "it was mostly about testing."),
]
FRAME_PHASE_LEADS = [0.5 + 0.004 * k for k in range(8)]  # 8 x 64 samples = one 512-sample frame


def test_a_mid_sentence_pause_of_0_7_s_stays_one_turn(vad: SileroVAD) -> None:
    split = []
    for first_text, second_text in PAUSED_ANSWERS:
        first, second = speech16(first_text), speech16(second_text)
        for lead in FRAME_PHASE_LEADS:
            audio = audio16(lead, first, 0.7, second, 3.0)
            run = feed(TurnDetector(vad.stream(), DetectorOptions()), audio)
            assert run.turns, "the answer never ended"
            # The one turn holds both halves, and the pause between them.
            if len(run.turns) != 1 or not np.array_equal(
                nonzero(run.turns[0].audio), nonzero(audio)
            ):
                split.append((f"{first_text} / {second_text}", round(lead * 1000), len(run.turns)))
    assert split == [], f"(answer, lead in ms, turns) split by a 0.7 s pause: {split}"


def test_the_same_pause_splits_the_answer_when_end_silence_is_shorter(vad: SileroVAD) -> None:
    # The counterpart of the test above: the 0.7 s pause is really seen as a pause.
    first, second = speech16(FIRST_PART), speech16(SECOND_PART)
    audio = audio16(1.0, first, 0.7, second, 3.0)
    run = feed(TurnDetector(vad.stream(), DetectorOptions(end_silence=0.5)), audio)

    assert len(run.turns) == 2
    assert np.array_equal(nonzero(run.turns[0].audio), nonzero(first))
    assert np.array_equal(nonzero(run.turns[1].audio), nonzero(second))


@pytest.mark.parametrize("end_silence", [0.8, 1.2])
def test_the_end_of_an_answer_is_noticed_within_end_silence_plus_0_1_s(
    vad: SileroVAD, end_silence: float
) -> None:
    audio = audio16(1.0, speech16(ANSWER), 3.0)
    run = feed(TurnDetector(vad.stream(), DetectorOptions(end_silence=end_silence)), audio)

    _start, end = bounds(audio)
    [ended] = run.times(TurnEvent.turn_ended)
    assert end + end_silence - 0.1 <= ended <= end + end_silence + 0.1


def test_turn_timings_match_where_the_speech_is(vad: SileroVAD) -> None:
    # 1.5 s of silence first, so the pre-roll buffer is trimmed several times before speech.
    audio = audio16(1.5, speech16(ANSWER), 2.0)
    run = feed(TurnDetector(vad.stream(), FIXED), audio)

    [turn] = run.turns
    start, end = bounds(audio)
    assert turn.speech_started == pytest.approx(start, abs=TIMING_TOLERANCE)
    assert turn.speech_ended == pytest.approx(end, abs=TIMING_TOLERANCE)
    assert turn.detected == run.times(TurnEvent.turn_ended)[0]
    assert turn.speech_started < turn.speech_ended < turn.detected


def test_the_turn_audio_holds_the_whole_answer(vad: SileroVAD) -> None:
    answer = speech16(ANSWER)
    audio = audio16(1.5, answer, 2.0)
    run = feed(TurnDetector(vad.stream(), FIXED), audio)

    [turn] = run.turns
    assert turn.audio.dtype == np.int16
    # Every sample of the answer, in order, none missing at the onset or the end.
    assert np.array_equal(nonzero(turn.audio), nonzero(answer))
    seconds = len(turn.audio) / RATE
    options = DetectorOptions()
    # It covers the speech, and holds no more than the pre-roll buffer (at most twice the
    # pre-roll) before it and the tail after it.
    assert len(answer) / RATE <= seconds <= len(answer) / RATE + 2 * options.pre_roll + 0.2 + 0.05


def test_silence_alone_never_starts_a_turn(vad: SileroVAD) -> None:
    detector = TurnDetector(vad.stream(), FIXED)
    run = feed(detector, audio16(10.0))

    assert run.events == []
    assert not detector.speaking


def test_a_loud_60_ms_noise_click_does_not_start_a_turn(vad: SileroVAD) -> None:
    rng = np.random.default_rng(7)
    click = np.clip(rng.standard_normal(round(0.06 * RATE)) * 8000, -32768, 32767)
    detector = TurnDetector(vad.stream(), FIXED)
    run = feed(detector, audio16(1.0, click.astype(np.int16), 1.0, click.astype(np.int16), 1.0))

    assert run.events == []
    assert not detector.speaking


def test_short_speech_blips_do_not_start_or_add_up_to_a_turn(vad: SileroVAD) -> None:
    # 60 ms cut out of a vowel: silero does call a few frames of it speech, fewer than the
    # `start_speech` (0.2 s) a turn needs; repeated blips apart must not add up to one.
    vowel = speech16("Ah")
    blip = vowel[round(0.1 * RATE) : round(0.16 * RATE)]
    alone = audio16(0.5, blip, 0.5)
    speech_frames = [p for _start, p in vad.stream().feed(alone) if p >= 0.5]
    assert 1 <= len(speech_frames) < DetectorOptions().start_speech / 0.032

    detector = TurnDetector(vad.stream(), FIXED)
    run = feed(detector, audio16(0.5, blip, 0.5, blip, 0.5, blip, 0.5, blip, 1.0))

    assert run.events == []
    assert not detector.speaking


def test_pause_and_resumed_fire_around_a_mid_answer_pause(vad: SileroVAD) -> None:
    first, second = speech16("We moved the billing jobs"), speech16("onto a queue.")
    audio = audio16(1.0, first, 0.7, second, 3.0)
    run = feed(TurnDetector(vad.stream(), FIXED), audio)

    assert run.kinds() == [
        TurnEvent.speech_started,
        TurnEvent.pause,  # mid-answer
        TurnEvent.resumed,
        TurnEvent.pause,  # after the answer, before the turn ends
        TurnEvent.turn_ended,
    ]
    decide_after = DetectorOptions().decide_after
    first_end = bounds(audio16(1.0, first))[1]
    second_start = first_end + 0.7
    pause, _final_pause = run.times(TurnEvent.pause)
    [resumed] = run.times(TurnEvent.resumed)
    assert pause == pytest.approx(first_end + decide_after, abs=TIMING_TOLERANCE)
    assert resumed == pytest.approx(second_start, abs=TIMING_TOLERANCE)


def test_speech_started_fires_soon_after_the_speech_begins(vad: SileroVAD) -> None:
    detector = TurnDetector(vad.stream(), FIXED)
    audio = audio16(1.0, speech16(ANSWER))
    run = feed(detector, audio)

    assert run.kinds() == [TurnEvent.speech_started]
    start, _end = bounds(audio)
    options = DetectorOptions()
    assert start < run.times(TurnEvent.speech_started)[0] <= start + options.start_speech + 0.15
    assert detector.speaking


def test_max_turn_ends_endless_speech(vad: SileroVAD) -> None:
    # 9 s of talk with no pause longer than 0.1 s: only max_turn can end a turn here.
    sentences = [speech16(ANSWER), speech16(OTHER_ANSWER), speech16(ANSWER)]
    talk = audio16(sentences[0], 0.1, sentences[1], 0.1, sentences[2])
    audio = audio16(1.0, talk)
    options = DetectorOptions(max_turn=3.0)
    detector = TurnDetector(vad.stream(), options)
    run = feed(detector, audio)

    start, end = bounds(audio)
    ended = run.times(TurnEvent.turn_ended)
    assert len(ended) >= 2
    first = ended[0]
    # The turn holds at most max_turn seconds of audio, pre-roll included.
    assert (
        start + options.max_turn - 2 * options.pre_roll - 0.1 <= first <= start + options.max_turn
    )
    assert first < end  # forced while the candidate was still talking
    for turn in run.turns:
        assert len(turn.audio) / RATE <= options.max_turn + 0.05
    # The talk goes on, so a new turn starts straight after each forced end.
    kinds = run.kinds()
    assert kinds[0] is TurnEvent.speech_started
    for i, kind in enumerate(kinds[:-1]):
        if kind is TurnEvent.turn_ended:
            assert kinds[i + 1] is TurnEvent.speech_started


def test_after_take_turn_a_second_answer_is_a_new_turn(vad: SileroVAD) -> None:
    first, second = speech16(ANSWER), speech16(OTHER_ANSWER)
    audio = audio16(1.0, first, 2.0, second, 2.0)
    detector = TurnDetector(vad.stream(), FIXED)
    run = feed(detector, audio)

    assert run.kinds().count(TurnEvent.speech_started) == 2
    assert len(run.turns) == 2
    one, two = run.turns
    assert np.array_equal(nonzero(one.audio), nonzero(first))
    assert np.array_equal(nonzero(two.audio), nonzero(second))
    second_start = at(len(audio16(1.0, first, 2.0)))
    second_end = second_start + len(second) / RATE
    assert two.speech_started == pytest.approx(second_start, abs=TIMING_TOLERANCE)
    assert two.speech_ended == pytest.approx(second_end, abs=TIMING_TOLERANCE)
    assert one.detected < two.speech_started
    assert not detector.speaking


def test_reset_forgets_speech_heard_so_far(vad: SileroVAD) -> None:
    # Speech heard while the interviewer talks is dropped; the answer after it stands alone.
    detector = TurnDetector(vad.stream(), FIXED)
    heard = feed(detector, audio16(0.5, speech16(OTHER_ANSWER)))
    assert heard.kinds() == [TurnEvent.speech_started]
    detector.reset()
    assert not detector.speaking

    answer = speech16(ANSWER)
    chunks_so_far = -(-len(audio16(0.5, speech16(OTHER_ANSWER))) // CHUNK)
    run = feed(detector, audio16(1.0, answer, 2.0), start_chunk=chunks_so_far)

    [turn] = run.turns
    assert np.array_equal(nonzero(turn.audio), nonzero(answer))


def test_the_onset_survives_a_short_first_syllable_and_a_brief_gap(vad: SileroVAD) -> None:
    # "Uh, I built ...": a first syllable too short to start a turn on its own (< 0.2 s of
    # speech frames), then a gap shorter than the 0.2 s that would forget it. The turn then
    # starts at the syllable (speech_started says so), and its audio must hold the syllable
    # whole. Where the 20 ms chunks fall against the 32 ms frames changes where the pre-roll
    # trim lands, so the same answer is tried at a range of leading silences.
    uh, rest = speech16("Uh", rate_wpm=220), speech16("I built the billing service.")
    clipped = []
    for lead_ms in range(1000, 1320, 20):
        audio = audio16(lead_ms / 1000, uh, 0.2, rest, 2.0)
        run = feed(TurnDetector(vad.stream(), FIXED), audio)
        [turn] = run.turns
        start, _end = bounds(audio)
        if turn.speech_started > start + TIMING_TOLERANCE:
            continue  # the syllable was judged a blip and forgotten: that is allowed
        kept, spoken = nonzero(turn.audio), nonzero(audio)
        if not np.array_equal(kept, spoken):
            clipped.append((lead_ms, len(spoken) - len(kept)))
    assert clipped == [], f"(lead in ms, samples of the answer missing from the turn): {clipped}"


def test_end_after_ends_this_pause_early_and_speech_restores_the_fallback(vad: SileroVAD) -> None:
    first, second = speech16("We moved the billing jobs"), speech16("onto a queue.")
    audio = audio16(1.0, first, 1.0, second, 3.0)
    detector = TurnDetector(vad.stream(), DetectorOptions(end_silence=2.5))
    first_end = bounds(audio16(1.0, first))[1]
    events: list[tuple[float, TurnEvent]] = []
    for i, offset in enumerate(range(0, len(audio), CHUNK)):
        now = clock(i + 1)
        event = detector.feed(audio[offset : offset + CHUNK], now=now)
        if event is TurnEvent.pause:
            assert detector.silence >= DetectorOptions().decide_after
            detector.end_after(0.5)
        if event not in (None, TurnEvent.onset):
            events.append((now, event))
        if event is TurnEvent.turn_ended:
            break
    # The judged pause ended the turn 0.5 s into it, before the second stretch began.
    assert [event for _at, event in events] == [
        TurnEvent.speech_started,
        TurnEvent.pause,
        TurnEvent.turn_ended,
    ]
    assert events[-1][0] == pytest.approx(first_end + 0.5, abs=TIMING_TOLERANCE)


def test_speech_after_a_judged_pause_restores_the_patient_fallback(vad: SileroVAD) -> None:
    first, second = speech16("We moved the billing jobs"), speech16("onto a queue.")
    audio = audio16(1.0, first, 0.4, second, 3.0)
    detector = TurnDetector(vad.stream(), DetectorOptions(end_silence=2.5))
    kinds = []
    for i, offset in enumerate(range(0, len(audio), CHUNK)):
        event = detector.feed(audio[offset : offset + CHUNK], now=clock(i + 1))
        if event is TurnEvent.pause:
            detector.end_after(1.0)  # longer than this pause: the candidate goes on first
        if event is TurnEvent.resumed:
            assert detector.end_silence == 2.5
        if event not in (None, TurnEvent.onset):
            kinds.append(event)
        if event is TurnEvent.turn_ended:
            break
    assert kinds == [
        TurnEvent.speech_started,
        TurnEvent.pause,
        TurnEvent.resumed,
        TurnEvent.pause,
        TurnEvent.turn_ended,
    ]


def test_the_onset_comes_within_0_15_s_of_speech_and_before_speech_started(vad: SileroVAD) -> None:
    audio = audio16(1.0, speech16(ANSWER), 1.5)
    run = feed(TurnDetector(vad.stream(), FIXED), audio)
    start = bounds(audio)[0]
    [onset] = run.onsets
    [started] = run.times(TurnEvent.speech_started)
    assert start < onset <= start + 0.15
    assert onset < started


def test_muted_audio_is_silence_to_the_detector(vad: SileroVAD) -> None:
    audio = audio16(0.5, speech16(ANSWER), 1.5)
    detector = TurnDetector(vad.stream(), FIXED)
    events = [
        detector.feed(audio[offset : offset + CHUNK], now=clock(i + 1), mute=True)
        for i, offset in enumerate(range(0, len(audio), CHUNK))
    ]
    assert [event for event in events if event is not None] == []
    assert detector.speech_seconds == 0
