"""The one place that picks and builds the speech engines from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from interview.config import Settings
from interview.models import ModelPaths
from interview.speech.stt import SpeechToText
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.tts import TextToSpeech
from interview.speech.tts.kokoro import KokoroTTS
from interview.speech.vad import SileroVAD


@dataclass(frozen=True)
class SpeechEngines:
    vad: SileroVAD
    stt: SpeechToText
    tts: TextToSpeech

    def warmup(self) -> None:
        """Pay every first-call cost now, not in the first interview."""
        self.vad.warmup()
        self.stt.warmup()
        self.tts.warmup()


def model_paths(settings: Settings) -> ModelPaths:
    return ModelPaths(root=settings.models_dir, whisper=settings.whisper_model)


def build_engines(settings: Settings) -> SpeechEngines:
    """Verify the model files (a clear error names any missing one), then load the engines."""
    paths = model_paths(settings)
    paths.verify()
    return SpeechEngines(
        vad=SileroVAD(paths.silero_vad, threshold=settings.vad_threshold),
        stt=LocalWhisper(
            paths.whisper_dir,
            beam_size=settings.stt_beam_size,
            cpu_threads=settings.speech_threads,
            workers=settings.stt_workers,
        ),
        tts=KokoroTTS(
            paths.kokoro_model, paths.kokoro_voices, default_voice=settings.tts_voice,
            speed=settings.tts_speed, threads=settings.speech_threads,
        ),
    )  # fmt: skip
