"""Decides when a candidate has finished an answer, from a stream of 16 kHz audio.

Stock ReplyOnPause judges each 0.6 s chunk on its own, so a thinking pause of 0.7 s splits one
answer in two. Here silence is measured on silero's 32 ms frames: after `decide_after` seconds
of it the detector reports a `pause` (the moment to judge whether the answer is finished), and
the turn ends once the silence reaches `end_silence`, which starts at the patient fallback
(`DetectorOptions.end_silence`) and may be lowered for this pause by whoever judged it
(`end_after`, interview.voice.listener).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from interview.speech.vad import FRAME_SECONDS, SAMPLE_RATE, VadStream


class TurnEvent(Enum):
    # The first moment of speech (onset_speech of it): enough to make a speaking interviewer
    # hold, not yet enough to count as an answer.
    onset = "onset"
    speech_started = "speech_started"
    pause = "pause"  # long enough to transcribe what came before, too short to end the turn
    resumed = "resumed"  # speech again after a pause: the answer goes on
    turn_ended = "turn_ended"


TAIL_SECONDS = 0.2  # audio kept after the last speech frame: word endings are quiet
HYSTERESIS = 0.15


@dataclass(frozen=True)
class DetectorOptions:
    # The longest silence heard out inside an answer: what ends a turn when nothing judged it
    # finished sooner.
    end_silence: float = 2.5
    start_speech: float = 0.2  # speech needed before a turn counts as started
    onset_speech: float = 0.064  # two of silero's 32 ms frames: soon enough to stop within 0.3 s
    # Silence after which the answer so far is judged, and its last stretch transcribed: before
    # the shortest wait the judgement allows (0.25 s), so its evidence is mostly ready by then.
    decide_after: float = 0.12
    max_turn: float = 120.0
    pre_roll: float = 0.3  # audio kept before the first speech frame, so onsets are not clipped
    threshold: float = 0.5


@dataclass(frozen=True)
class Turn:
    audio: NDArray[np.int16]
    speech_started: float  # wall-clock (time.time()) of the first speech frame
    speech_ended: float  # wall-clock of the end of the last speech frame
    detected: float  # wall-clock when the end of the turn was decided
    # Wall-clock of audio[0] (the pre-roll, a little before speech_started): word timings of
    # the kept audio are measured from here.
    audio_started: float = 0.0


class TurnDetector:
    def __init__(self, vad: VadStream, options: DetectorOptions | None = None) -> None:
        self.vad = vad
        self.options = options or DetectorOptions()
        self._base_offset = 0  # VAD sample offset of the first buffered sample
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._chunks: list[NDArray[np.int16]] = []
        self._buffered = 0
        self._speech_frames = 0
        self._silence = 0.0
        self._started = False
        self._paused = False
        self._onset = False
        self.end_silence = self.options.end_silence
        self._first_speech_sample: int | None = None
        self._last_speech_end_sample = 0

    @property
    def speaking(self) -> bool:
        return self._started

    @property
    def speech_seconds(self) -> float:
        """Speech heard in the turn so far (its speech frames, pauses not counted)."""
        return self._speech_frames * FRAME_SECONDS

    @property
    def silence(self) -> float:
        """Seconds of silence since the last speech frame (0 while the candidate speaks)."""
        return self._silence

    def end_after(self, seconds: float) -> None:
        """End the turn once this pause has lasted `seconds` (at the next frame if it already
        has); speech before then resumes the answer and restores the patient fallback."""
        self.end_silence = seconds

    def feed(
        self, samples: NDArray[np.int16], now: float | None = None, *, mute: bool = False
    ) -> TurnEvent | None:
        """Add 16 kHz audio received at wall-clock `now`; report what changed, if anything.

        `mute` counts these samples as silence whatever the VAD says (the echo of the
        interviewer's own voice); they are still kept, and still go through the VAD, whose
        state follows the audio.
        """
        now = time.time() if now is None else now
        samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        self._chunks.append(samples)
        self._buffered += len(samples)
        event: TurnEvent | None = None
        for start, probability in self.vad.feed(samples):
            frame_end = start + int(FRAME_SECONDS * SAMPLE_RATE)
            # Within an answer a lower bar counts as speech (silero's own hysteresis): the
            # quiet onset of a word after a pause must not stretch the pause into an end.
            threshold = self.options.threshold - (HYSTERESIS if self._started else 0.0)
            if probability >= threshold and not mute:
                self._speech_frames += 1
                self._silence = 0.0
                if self._paused:
                    self._paused = False
                    self.end_silence = self.options.end_silence
                    event = TurnEvent.resumed
                if self._first_speech_sample is None:
                    self._first_speech_sample = start
                self._last_speech_end_sample = frame_end
                if (
                    not self._onset
                    and self._speech_frames * FRAME_SECONDS >= self.options.onset_speech
                ):
                    self._onset = True
                    if not self._started:
                        event = TurnEvent.onset
                if (
                    not self._started
                    and self._speech_frames * FRAME_SECONDS >= self.options.start_speech
                ):
                    self._started = True
                    event = TurnEvent.speech_started
            else:
                self._silence += FRAME_SECONDS
                if not self._started:
                    # Stray blips before a real start do not accumulate into one.
                    if self._silence > self.options.start_speech:
                        self._speech_frames = 0
                        self._onset = False
                        self._first_speech_sample = None
                    self._trim_pre_roll()
                    continue
                if self._silence >= self.end_silence:
                    return TurnEvent.turn_ended
                if not self._paused and self._silence >= self.options.decide_after:
                    self._paused = True
                    event = TurnEvent.pause
            if self._started and self._turn_seconds() >= self.options.max_turn:
                return TurnEvent.turn_ended
        return event

    def take_turn(self, now: float | None = None) -> Turn:
        """The audio of the turn that just ended (or of the speech so far), then start afresh."""
        now = time.time() if now is None else now
        audio = self.current_audio()
        # Wall-clock of a sample: `now` is when the newest buffered sample arrived.
        start_sample = self._first_speech_sample or 0
        newest = self._base_offset + self._buffered

        def at(sample: int) -> float:
            return now - (newest - sample) / SAMPLE_RATE

        turn = Turn(
            audio=audio,
            speech_started=at(start_sample),
            speech_ended=at(self._last_speech_end_sample),
            detected=now,
            audio_started=at(self._base_offset),
        )
        self._base_offset = newest
        self._reset_turn()
        return turn

    def current_audio(self) -> NDArray[np.int16]:
        """The turn's audio so far, from the pre-roll to just after the last speech frame."""
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        audio = np.concatenate(self._chunks)
        if len(self._chunks) > 1:
            self._chunks = [audio]  # keep one array: this is called on every pause
        return audio[: self._speech_end_index(len(audio))]

    def _speech_end_index(self, available: int) -> int:
        end = self._last_speech_end_sample - self._base_offset + int(TAIL_SECONDS * SAMPLE_RATE)
        return max(0, min(available, end))

    def reset(self) -> None:
        """Forget the current turn (e.g. audio heard while the interviewer spoke)."""
        self._base_offset += self._buffered
        self._reset_turn()

    def _turn_seconds(self) -> float:
        return self._buffered / SAMPLE_RATE

    def _trim_pre_roll(self) -> None:
        # Before speech starts only the last `pre_roll` seconds are worth keeping, and never
        # the speech already counted towards a start (nor the pre-roll in front of it).
        keep = int(self.options.pre_roll * SAMPLE_RATE)
        if self._first_speech_sample is not None:
            onset = self._first_speech_sample - self._base_offset - keep
            keep = max(keep, self._buffered - max(onset, 0))
        if self._buffered <= keep * 2:
            return
        audio = np.concatenate(self._chunks)
        dropped = len(audio) - keep
        self._chunks = [audio[dropped:]]
        self._buffered = keep
        self._base_offset += dropped
