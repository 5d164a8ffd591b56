"""The ear on real speech and the real silero VAD (transcription stood in by known text): the
interviewer's echo is not the candidate, the first speech over a line pauses it, a backchannel
resumes it, real words cut it, speech just after an answer ended withdraws the reply, and a
judged pause ends the answer as the policy says."""

from __future__ import annotations

import time
from concurrent.futures import Future

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.speech_audio import join, resample, speech
from interview.domain import Interruption
from interview.speech.model_files import ModelPaths, models_dir_from_env
from interview.speech.vad import SileroVAD
from interview.voice.floor import Floor, FloorState
from interview.voice.listener import FixedSilence, Listener
from interview.voice.turn_detector import DetectorOptions, TurnDetector

RATE = 16_000
CHUNK = 960  # fastrtc hands the handler 60 ms frames


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    model = SileroVAD(ModelPaths(models_dir_from_env()).silero_vad)
    model.load()
    return model


def at_rms(samples: NDArray[np.int16], rms: float) -> NDArray[np.int16]:
    audio = samples.astype(np.float32)
    level = float(np.sqrt(np.mean(np.square(audio[np.abs(audio) > 300] / 32768.0))))
    return np.clip(audio * (rms / level), -32768, 32767).astype(np.int16)


def said(text: str, rms: float = 0.1, after: float = 0.5, then: float = 1.0) -> NDArray[np.int16]:
    clip = at_rms(resample(speech(text), 48_000, RATE), rms)
    return join(after, clip, then, sample_rate=RATE)


class Words:
    """Transcription stood in: every stretch reads as `text`, at once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    def __call__(self, audio: NDArray[np.float32]) -> Future[str]:
        self.calls += 1
        future: Future[str] = Future()
        future.set_result(self.text)
        return future


def ear(vad: SileroVAD, words: str, floor: Floor, end_after: float = 0.8) -> Listener:
    return Listener(
        "s",
        TurnDetector(vad.stream(), DetectorOptions(end_silence=2.5)),
        transcribe=Words(words),
        notify=lambda _sid, _event: None,
        policy=FixedSilence(end_after),
        floor=floor,
    )


def hear(listener: Listener, audio: NDArray[np.int16]) -> list[int]:
    """Feed `audio` in 60 ms frames; the frame indexes at which an answer ended."""
    ended = []
    for i, start in enumerate(range(0, len(audio), CHUNK)):
        if listener.hear(audio[start : start + CHUNK]):
            ended.append(i)
    return ended


def speaking_floor(echo_rms: float) -> Floor:
    """A floor whose interviewer is speaking, as loud as `echo_rms` at the microphone's end."""
    floor = Floor()
    floor.speaking(reply=False)
    floor.sent(time.monotonic() + 60, echo_rms)
    return floor


def test_the_interviewers_echo_at_minus_20_db_is_not_the_candidate(vad: SileroVAD):
    floor = speaking_floor(echo_rms=0.1)
    listener = ear(vad, "Thank you. Now tell me", floor)
    echo = said("Thank you. Now tell me about a time you disagreed.", rms=0.1 * 10 ** (-20 / 20))
    assert hear(listener, echo) == []
    assert floor.state is FloorState.speaking
    assert listener.last_onset_at is None


def test_the_candidates_first_speech_pauses_the_line_and_real_words_cut_it(vad: SileroVAD):
    floor = speaking_floor(echo_rms=0.1)
    listener = ear(vad, "Sorry, could you repeat that?", floor)
    audio = said("Sorry, could you repeat that please?", rms=0.1)
    onset = None
    for start in range(0, len(audio), CHUNK):
        listener.hear(audio[start : start + CHUNK])
        if onset is None and floor.state is FloorState.paused:
            onset = start / RATE
        if floor.state is FloorState.abandoned:
            break
    assert onset is not None and onset - 0.5 < 0.2  # within 0.2 s of the first word
    assert floor.state is FloorState.abandoned and floor.interruption is Interruption.barge_in


def test_a_backchannel_resumes_the_line_and_is_not_an_answer(vad: SileroVAD):
    floor = speaking_floor(echo_rms=0.05)
    listener = ear(vad, "Mm-hmm.", floor)
    assert hear(listener, said("Mm-hmm.", rms=0.1, then=3.0)) == []
    assert floor.state is FloorState.speaking
    assert listener.last_turn is None


def test_speech_right_after_an_answer_ended_withdraws_the_reply_and_continues_it(
    vad: SileroVAD,
):
    floor = Floor()
    listener = ear(vad, "I built the billing service.", floor, end_after=0.5)
    first = hear(listener, said("I built the billing service.", then=1.0))
    assert len(first) == 1 and floor.state is FloorState.replying
    assert listener.last_turn_continues is False
    more = hear(listener, said("And then I rewrote the alerting.", after=0.2, then=1.0))
    assert floor.state is FloorState.replying  # the next answer ended: its reply is next
    assert len(more) == 1 and listener.last_turn_continues is True


def test_a_judged_pause_ends_the_answer_when_the_policy_says(vad: SileroVAD):
    for end_after in (0.5, 1.2):
        listener = ear(vad, "I built the billing service.", Floor(), end_after=end_after)
        audio = said("I built the billing service.", then=2.0)
        [ended] = hear(listener, audio)
        assert listener.last_turn is not None
        speech_end = len(audio) / RATE - 2.0
        assert ended * CHUNK / RATE - speech_end == pytest.approx(end_after, abs=0.2)


@pytest.mark.parametrize("heard", ["Mm-hmm.", "M&HM.", "Uh-huh.", "Okay.", "Yeah, right."])
def test_whispers_spellings_of_a_backchannel_resume_the_line(vad: SileroVAD, heard: str):
    floor = speaking_floor(echo_rms=0.05)
    listener = ear(vad, heard, floor)
    assert hear(listener, said("Mm-hmm.", rms=0.1, then=3.0)) == []
    assert floor.state is FloorState.speaking
