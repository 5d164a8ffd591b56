"""A spoken interview with STT_ENGINE=openai and TTS_ENGINE=openai against the local fake
OpenAI server: the interviewer's voice comes from the fake's speech route (espeak-ng behind
it), the candidate's answer is transcribed by the fake's transcription route (the project's
local Whisper behind it, run on the WAV the service uploaded)."""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from harness.app_server import AppServer
from harness.fake_openai import FakeOpenAI, Speech, Transcript
from harness.speech_audio import load_wav, speak, speech
from harness.voice_client import VoiceClient, start_session
from tests.e2e.conftest import recall, start_voice_server
from tests.e2e.test_voice import transcript

Transcribe = Callable[[int, np.ndarray], str]

GREETING = "Hello, welcome to your practice interview. Tell me about a project you are proud of."
ANSWER = "I built a billing service in Python and kept it reliable with careful tests"
NEXT_QUESTION = "How do you debug a failing service?"


class SpeechBehindFake:
    """The fake's two audio routes, made of real speech tools, remembering what they said."""

    def __init__(self, transcribe: Transcribe) -> None:
        self._transcribe = transcribe
        self._lock = threading.Lock()
        self.spoken: list[str] = []
        self.heard: list[str] = []

    def speak(self, body: dict) -> Speech:
        _rate, samples = load_wav(speak(body["input"], sample_rate=24_000))
        with self._lock:
            self.spoken.append(body["input"])
        return Speech(samples.astype("<i2").tobytes(), chunks=8)

    def hear(self, body: dict) -> Transcript:
        rate, samples = _wav(body["audio"])
        assert rate == 16_000  # the rate the pipeline hands to speech-to-text
        text = self._transcribe(rate, samples)
        with self._lock:
            self.heard.append(text)
        return Transcript(text)


def _wav(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), "<i2")


@pytest.fixture
def openai_voice(
    tmp_path, transcribe: Transcribe
) -> Iterator[tuple[AppServer, FakeOpenAI, SpeechBehindFake]]:
    fake = FakeOpenAI()
    fake.start()
    behind = SpeechBehindFake(transcribe)
    fake.speech.default = behind.speak
    fake.transcriptions.default = behind.hear
    server = start_voice_server(
        tmp_path,
        STT_ENGINE="openai",
        TTS_ENGINE="openai",
        # Only the speech engines are under test here, not the LLM interviewer or report.
        INTERVIEWER="scripted",
        REPORT_EVALUATION="false",
        # A CPU recognizer behind the fake is slower than the API: no fallback by accident.
        OPENAI_SPEECH_TIMEOUT_SECONDS="60",
        **fake.env(),
    )
    try:
        yield server, fake, behind
    finally:
        server.stop()
        fake.stop()


async def test_a_spoken_turn_through_the_openai_speech_engines(
    openai_voice: tuple[AppServer, FakeOpenAI, SpeechBehindFake], transcribe: Transcribe
) -> None:
    server, fake, behind = openai_voice
    sid, token = await start_session(server.api, plan_id="quick-engineer")
    client = await VoiceClient.connect(server.api, sid, token)
    try:
        greeting = await client.wait_for_reply(timeout=60)
        heard = transcribe(greeting.sample_rate, greeting.audio)
        assert recall(GREETING, heard) >= 0.7, heard
        # Made by the speech route, not by Kokoro: every greeting sentence was asked for.
        assert recall(GREETING, " ".join(behind.spoken)) == 1.0, behind.spoken
        assert all(r.body["voice"] == "alloy" for r in fake.speech_requests())

        said = await client.say(speech(ANSWER))
        reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=60)
        heard_reply = transcribe(reply.sample_rate, reply.audio)
        assert recall(NEXT_QUESTION, heard_reply) >= 0.6, heard_reply

        turns = await transcript(server, sid, token)
        assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
        answer = turns[1]["text"]
        assert recall(ANSWER, answer) >= 0.8, answer
        # The answer's text is what the transcription route returned.
        assert behind.heard and all(text.strip() in answer for text in behind.heard)
        for request in fake.transcription_requests():
            assert request.body["model"] == "gpt-transcribe"
            assert request.files["file"][:4] == b"RIFF"
    finally:
        await client.close()

    log = server.log()
    assert "speech_engine_fallback" not in log  # no call needed the local engines
    assert fake.api_key not in log
