"""Text-to-speech through the OpenAI speech API (or any OpenAI-compatible server), streamed PCM.

Optional (TTS_ENGINE=openai); engines.py wraps it with Kokoro as the fallback. Raw PCM is asked
for because it needs no decoder and is already what the pipeline plays: 16-bit little-endian
mono at 24 kHz, the same rate as Kokoro, so either engine's audio fits the same stream.
"""

from __future__ import annotations

import time

import numpy as np
from openai import OpenAI

from interview.config import Settings
from interview.openai_client import sync_client
from interview.speech.errors import SpeechOutputError
from interview.speech.tts.base import Speech

OPENAI_TTS_SAMPLE_RATE = 24_000
# The built-in voices of the speech API. Plans and sessions name Kokoro voices ("af_heart");
# those are not sent to OpenAI, which would refuse them with a 400.
OPENAI_VOICES = frozenset(
    {
        "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
        "verse", "marin", "cedar",
    }
)  # fmt: skip
# Shorter than this is not speech for a non-empty sentence: an empty or cut-off answer.
MIN_AUDIO_SECONDS = 0.05


class OpenAITextToSpeech:
    name = "openai"
    sample_rate = OPENAI_TTS_SAMPLE_RATE
    voices = OPENAI_VOICES  # what voice_for() passes on; any other name speaks the default

    def __init__(self, settings: Settings, client: OpenAI | None = None) -> None:
        self.model = settings.openai_tts_model
        # Not checked against OPENAI_VOICES: an OpenAI-compatible server may have its own names.
        self.default_voice = settings.openai_tts_voice
        self.timeout = settings.openai_speech_timeout_seconds
        self._client = client or sync_client(settings, timeout=self.timeout, max_retries=0)
        # Audio from this engine must never share a speech-cache entry with Kokoro's (or with
        # another server's or voice's), so the cache keys pieces by this instead of the model
        # file. The base URL is not a secret; the key is not part of it.
        server = settings.openai_base_url or "api.openai.com"
        self.cache_key = f"openai|{server}|{self.model}|{self.default_voice}"

    def voice_for(self, voice: str | None) -> str:
        return voice if voice in OPENAI_VOICES else self.default_voice

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        if not text.strip():
            return Speech(np.zeros(0, dtype=np.float32), self.cache_key)
        # The SDK's timeout bounds each read, not the whole answer: a server trickling bytes
        # could hold a sentence far longer, so the stream also has an overall deadline.
        deadline = time.monotonic() + self.timeout
        pcm = bytearray()
        with self._client.audio.speech.with_streaming_response.create(
            model=self.model,
            voice=self.voice_for(voice),
            input=text,
            response_format="pcm",
        ) as response:
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind.endswith("json") or kind.startswith("text/"):
                raise SpeechOutputError(f"speech answer is {kind}, not PCM audio")
            for chunk in response.iter_bytes():
                pcm.extend(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"speech stream took longer than {self.timeout:g} s")
        if len(pcm) % 2:
            raise SpeechOutputError(f"speech answer of {len(pcm)} bytes is not 16-bit PCM")
        if len(pcm) < MIN_AUDIO_SECONDS * self.sample_rate * 2:
            raise SpeechOutputError(f"speech answer of {len(pcm)} bytes is too short")
        audio = np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float32) / 32768.0
        return Speech(audio, self.cache_key)

    def warmup(self) -> None:
        # No request: a warm-up sentence would be billed at every start and there is nothing
        # local to load. The fallback wrapper warms Kokoro, which answers if this one fails.
        return None
