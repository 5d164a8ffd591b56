"""SileroVAD and VadStream on the real silero ONNX model, with espeak-ng speech."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.speech_audio import Int16Array, join, resample, speech, speech_seconds
from interview.speech.model_files import ModelPaths, models_dir_from_env
from interview.speech.vad import (
    _GATE_ENERGY,
    CONTEXT,
    FRAME,
    GATE_DBFS,
    GATE_SETTLE_FRAMES,
    SAMPLE_RATE,
    SileroVAD,
    VadStream,
    to_float32,
)
from interview.voice.turn_detector import TurnDetector, TurnEvent

ANSWER = "I built our payments service and ran it for three years."


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD(ModelPaths(models_dir_from_env()).silero_vad)


def speech16(text: str) -> Int16Array:
    return resample(speech(text), 48_000, SAMPLE_RATE)


@pytest.mark.parametrize(
    "text",
    [ANSWER, "Mostly Python, with some Go for the streaming parts.", "Yes."],
)
def test_vad_reports_about_the_speech_duration_of_a_clip(vad: SileroVAD, text: str) -> None:
    clip = speech16(text)
    audio = join(1.0, clip, 1.0, sample_rate=SAMPLE_RATE)
    spoken = speech_seconds(clip, SAMPLE_RATE)  # energy-based: windows above -44 dBFS
    assert spoken > 0.2

    seconds, chunks = vad.vad((SAMPLE_RATE, audio), None)

    assert seconds == pytest.approx(spoken, rel=0.3)
    assert seconds == sum(c["end"] - c["start"] for c in chunks) / SAMPLE_RATE
    # The chunks lie inside the speech (give or take a frame), in order, not overlapping.
    speech_start, speech_end = SAMPLE_RATE, SAMPLE_RATE + len(clip)
    assert chunks
    assert chunks[0]["start"] >= speech_start - FRAME
    assert chunks[-1]["end"] <= speech_end + 2 * FRAME
    for earlier, later in itertools.pairwise(chunks):
        assert earlier["start"] < earlier["end"] < later["start"]


def test_vad_accepts_float32_the_same_as_int16(vad: SileroVAD) -> None:
    audio = join(0.5, speech16(ANSWER), 0.5, sample_rate=SAMPLE_RATE)
    from_int16 = vad.vad((SAMPLE_RATE, audio), None)
    from_float = vad.vad((SAMPLE_RATE, audio.astype(np.float32) / 32768.0), None)
    assert from_float == from_int16


@pytest.mark.parametrize("seconds", [0.5, 3.0])
def test_silence_has_no_speech(vad: SileroVAD, seconds: float) -> None:
    silent = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)
    speech_seconds_found, chunks = vad.vad((SAMPLE_RATE, silent), None)
    assert speech_seconds_found == 0.0
    assert chunks == []


def test_quiet_room_noise_has_next_to_no_speech(vad: SileroVAD) -> None:
    rng = np.random.default_rng(3)
    noise = np.clip(rng.standard_normal(3 * SAMPLE_RATE) * 30, -32768, 32767).astype(np.int16)
    seconds, _chunks = vad.vad((SAMPLE_RATE, noise), None)
    assert seconds <= 0.1


@pytest.mark.parametrize("rate", [8_000, 24_000, 48_000])
def test_a_wrong_sample_rate_is_refused(vad: SileroVAD, rate: int) -> None:
    with pytest.raises(ValueError, match="16000"):
        vad.vad((rate, np.zeros(rate, dtype=np.int16)), None)


def test_stream_reports_one_result_per_complete_frame_with_continuous_offsets(
    vad: SileroVAD,
) -> None:
    audio = join(0.3, speech16(ANSWER), 0.3, sample_rate=SAMPLE_RATE)
    sizes = [1, 100, 511, 512, 513, 320, 1000, 7, 4096, 333]
    stream = vad.stream()
    results: list[tuple[int, float]] = []
    offset = 0
    for call in range(10_000):
        if offset >= len(audio):
            break
        chunk = audio[offset : offset + sizes[call % len(sizes)]]
        completed_before = offset // FRAME
        got = stream.feed(chunk)
        offset += len(chunk)
        # Each call reports exactly the frames its audio completed, at their sample offsets.
        assert [start for start, _p in got] == [
            n * FRAME for n in range(completed_before, offset // FRAME)
        ]
        results.extend(got)

    starts = [start for start, _p in results]
    assert starts == list(range(0, (len(audio) // FRAME) * FRAME, FRAME))
    probabilities = np.array([p for _s, p in results])
    assert np.all((probabilities >= 0.0) & (probabilities <= 1.0))
    assert probabilities.max() > 0.9  # it heard the speech

    whole = vad.stream().feed(audio)
    assert [s for s, _p in whole] == starts
    # Chunking changes nothing: same frames, same recurrent state, same probabilities.
    np.testing.assert_allclose(probabilities, [p for _s, p in whole], atol=1e-5)


def test_streams_keep_their_own_state(vad: SileroVAD) -> None:
    audio = join(0.3, speech16(ANSWER), sample_rate=SAMPLE_RATE)
    one, other = vad.stream(), vad.stream()
    expected = vad.stream().feed(audio)
    other.feed(np.zeros(SAMPLE_RATE, dtype=np.int16))  # interleaved work on another stream
    got = one.feed(audio[: len(audio) // 2])
    other.feed(speech16("Yes."))
    got += one.feed(audio[len(audio) // 2 :])
    assert [s for s, _p in got] == [s for s, _p in expected]
    np.testing.assert_allclose([p for _s, p in got], [p for _s, p in expected], atol=1e-5)


def test_to_float32_scales_int16_to_the_unit_range() -> None:
    samples = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    np.testing.assert_allclose(to_float32(samples), [-1.0, -0.5, 0.0, 0.5, 32767 / 32768])
    floats = np.array([[0.25, -0.5]], dtype=np.float32)
    assert to_float32(floats).tolist() == [0.25, -0.5]


# -- the energy gate -------------------------------------------------------------------------

QUIET_ANSWERS = (
    ANSWER,
    "Sorry, could you repeat that?",
    "Honestly, I'm not sure.",
    "Fine, so what happens then?",
    "Has it shipped?",
)


def at_level(clip: Int16Array, dbfs: float) -> Int16Array:
    """`clip` scaled so that its RMS (over the whole clip) is `dbfs`."""
    samples = clip.astype(np.float64)
    gain = 10 ** (dbfs / 20) * 32768 / np.sqrt(np.mean(samples**2))
    return np.clip(np.round(samples * gain), -32768, 32767).astype(np.int16)


def room(seconds: float, dbfs: float, seed: int) -> Int16Array:
    """Gaussian noise at `dbfs` RMS: the floor a noise-suppressed browser microphone sends."""
    rng = np.random.default_rng(seed)
    sigma = 10 ** (dbfs / 20) * 32768
    return np.round(rng.standard_normal(round(seconds * SAMPLE_RATE)) * sigma).astype(np.int16)


@pytest.mark.parametrize("floor", [None, -80.0, -72.0])
def test_the_gate_skips_the_model_on_silence_and_a_quiet_floor(
    vad: SileroVAD, floor: float | None
) -> None:
    audio = np.zeros(3 * SAMPLE_RATE, dtype=np.int16) if floor is None else room(3, floor, 1)
    stream = vad.stream()
    results = stream.feed(audio)
    assert len(results) == len(audio) // FRAME
    # The model runs until it has judged GATE_SETTLE_FRAMES quiet frames silent, then no more.
    assert stream.model_runs == GATE_SETTLE_FRAMES
    assert all(p < 0.1 for _s, p in results)
    assert all(p == 0.0 for _s, p in results[GATE_SETTLE_FRAMES:])


@pytest.mark.parametrize("level", [-20.0, -30.0, -40.0])
@pytest.mark.parametrize("text", QUIET_ANSWERS)
def test_the_gate_finds_every_onset_the_model_finds_even_in_quiet_speech(
    vad: SileroVAD, text: str, level: float
) -> None:
    # Speech at -30 dBFS is a quiet talker far from the microphone; -40 dBFS is quieter still.
    clip = at_level(speech16(text), level)
    for lead in (np.zeros(SAMPLE_RATE, dtype=np.int16), room(1, -75, 2)):
        audio = join(lead, clip, 0.8, sample_rate=SAMPLE_RATE)
        gated, ungated = vad.stream(), VadStream(vad, gate=False)
        with_gate, without = gated.feed(audio), ungated.feed(audio)
        p_gate = np.array([p for _s, p in with_gate])
        p_model = np.array([p for _s, p in without])

        for threshold in (0.5, 0.35):  # the detector's thresholds: to start, and within a turn
            # The onset is found on the same frame: the gate never delays it.
            assert np.argmax(p_gate >= threshold) == np.argmax(p_model >= threshold) > 0
            # Elsewhere at most two borderline frames differ: the model's state was held over
            # the gated silence instead of run through it, as after a slightly shorter silence.
            assert np.count_nonzero((p_gate >= threshold) != (p_model >= threshold)) <= 2
        assert np.max(np.abs(p_gate - p_model)) < 0.25
        assert gated.model_runs < ungated.model_runs  # the gate did skip the silence


@pytest.mark.parametrize("level", [-30.0, -40.0])
def test_the_gate_changes_no_turn_event_of_a_quiet_answer_with_a_pause(
    vad: SileroVAD, level: float
) -> None:
    audio = join(
        room(1.0, -75, 3),
        at_level(speech16("We should have tested the migration on"), level),
        1.2,
        at_level(speech16("a full copy of the production data."), level),
        3.0,
        sample_rate=SAMPLE_RATE,
    )

    def events(stream: VadStream) -> list[tuple[int, TurnEvent]]:
        detector = TurnDetector(stream)
        found: list[tuple[int, TurnEvent]] = []
        for start in range(0, len(audio), 320):  # 20 ms frames, as from the connection
            event = detector.feed(audio[start : start + 320], now=0.0)
            if event is not None and event is not TurnEvent.onset:
                found.append((start, event))
            if event is TurnEvent.turn_ended:
                break
        return found

    with_gate, without = events(vad.stream()), events(VadStream(vad, gate=False))
    assert [e for _s, e in with_gate] == [e for _s, e in without]
    assert with_gate[0] == without[0]  # the start of the answer: on the same 20 ms frame
    for (gate_at, _e), (model_at, _m) in zip(with_gate, without, strict=True):
        assert abs(gate_at - model_at) <= 2 * FRAME
    assert [e for _s, e in with_gate] == [
        TurnEvent.speech_started,
        TurnEvent.pause,
        TurnEvent.resumed,
        TurnEvent.pause,
        TurnEvent.turn_ended,
    ]


def test_the_gate_threshold_is_where_it_is_documented() -> None:
    window = np.full(FRAME + CONTEXT, 10 ** (GATE_DBFS / 20), dtype=np.float32)
    assert np.dot(window, window) == pytest.approx(_GATE_ENERGY, rel=1e-5)
    assert GATE_DBFS <= -70.0  # 18 dB below the quietest onset of speech at -30 dBFS
