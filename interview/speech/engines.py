"""The one place that picks and builds the speech engines from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from interview.config import Settings, SpeechEngine
from interview.speech.fallback import FallbackSpeechToText, FallbackTextToSpeech
from interview.speech.model_files import KOKORO_MODEL, SMART_TURN, ModelPaths
from interview.speech.stt import SpeechToText
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.tts import TextToSpeech
from interview.speech.tts.kokoro import KokoroTTS
from interview.speech.turn import TurnModel
from interview.speech.turn.smart_turn import SmartTurn
from interview.speech.vad import SileroVAD


@dataclass(frozen=True)
class SpeechEngines:
    vad: SileroVAD
    # With OpenAI chosen, a fallback engine that answers with the local one when it fails.
    stt: SpeechToText
    tts: TextToSpeech
    # Whether the candidate has finished, from the audio of the answer so far.
    turn: TurnModel

    def warmup(self) -> None:
        """Pay every first-call cost now, not in the first interview."""
        self.vad.warmup()
        self.stt.warmup()
        self.tts.warmup()
        self.turn.warmup()


def model_paths(settings: Settings) -> ModelPaths:
    return ModelPaths(
        root=settings.models_dir,
        whisper=settings.whisper_model,
        accurate=settings.accurate_stt_model,
    )


def build_engines(settings: Settings) -> SpeechEngines:
    """Verify the model files (a clear error names any missing one), then load the engines.

    The local engines are loaded even when OpenAI is chosen: they answer whenever it fails.
    """
    paths = model_paths(settings)
    paths.verify()
    stt: SpeechToText = LocalWhisper(
        paths.whisper_dir,
        beam_size=settings.stt_beam_size,
        cpu_threads=settings.speech_threads,
        workers=settings.stt_workers,
        short_window=settings.stt_short_window,
    )
    tts: TextToSpeech = KokoroTTS(
        paths.kokoro_model, paths.kokoro_voices, model_id=KOKORO_MODEL.sha256,
        default_voice=settings.tts_voice, speed=settings.tts_speed,
        threads=settings.speech_threads,
    )  # fmt: skip
    # Imported only when chosen: a local-only service never loads the OpenAI SDK.
    if settings.stt_engine is SpeechEngine.openai:
        from interview.speech.stt.openai_stt import OpenAISpeechToText

        stt = FallbackSpeechToText(OpenAISpeechToText(settings), stt)
    if settings.tts_engine is SpeechEngine.openai:
        from interview.speech.tts.openai_tts import OpenAITextToSpeech

        tts = FallbackTextToSpeech(OpenAITextToSpeech(settings), tts)
    return SpeechEngines(
        vad=SileroVAD(paths.silero_vad, threshold=settings.vad_threshold),
        stt=stt,
        tts=tts,
        turn=SmartTurn(paths.smart_turn, model_id=SMART_TURN.sha256),
    )
