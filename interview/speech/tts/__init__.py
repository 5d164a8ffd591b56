"""Text-to-speech engines behind one Protocol."""

from interview.speech.tts.base import TextToSpeech

__all__ = ["TextToSpeech"]
