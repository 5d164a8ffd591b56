"""Speech-to-text through the OpenAI transcription API (or any OpenAI-compatible server).

Optional (STT_ENGINE=openai); engines.py wraps it with the local Whisper as the fallback, so
this class only has to do one honest attempt per answer and raise when it fails.
"""

from __future__ import annotations

import io
import wave

import numpy as np
from numpy.typing import NDArray
from openai import OpenAI

from interview.config import Settings
from interview.openai_client import sync_client
from interview.speech.errors import SpeechOutputError
from interview.speech.stt.base import STT_SAMPLE_RATE


def wav_bytes(audio: NDArray[np.float32], sample_rate: int = STT_SAMPLE_RATE) -> bytes:
    """16-bit mono PCM WAV in memory: the one format every transcription server accepts, and
    lossless for what the pipeline hands over (no encoder to install or to wait for)."""
    samples = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    pcm = np.round(samples * 32767.0).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


class OpenAISpeechToText:
    name = "openai"

    def __init__(self, settings: Settings, client: OpenAI | None = None) -> None:
        self.model = settings.openai_stt_model
        # SDK retries off: the fallback wrapper owns failure handling, and a retry would double
        # the candidate's wait before the local engine gets its turn.
        self._client = client or sync_client(
            settings, timeout=settings.openai_speech_timeout_seconds, max_retries=0
        )

    def transcribe(self, audio: NDArray[np.float32]) -> str:
        if audio.size == 0:
            return ""  # nothing was said; not worth a paid request
        result = self._client.audio.transcriptions.create(
            model=self.model,
            file=("answer.wav", wav_bytes(audio), "audio/wav"),
            # Interviews are in English (the local engine is pinned the same way): naming the
            # language stops short answers from being heard as another one.
            language="en",
            response_format="json",
        )
        # A body that is not the expected JSON comes back from the SDK as a plain str (non-JSON
        # content type) or as a model without `text`: both mean the server is not healthy.
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise SpeechOutputError(f"transcription answer without text ({type(result).__name__})")
        return text.strip()

    def warmup(self) -> None:
        # Deliberately no request: a warm-up transcription would be billed at every start, and
        # there is no model here to load. Reachability is learned from the first real answer;
        # if that fails the local engine (warmed by the fallback wrapper) answers instead.
        return None
