"""Text-to-speech engines behind one Protocol."""

from interview.speech.tts.base import Speech, TextToSpeech

__all__ = ["Speech", "TextToSpeech"]
