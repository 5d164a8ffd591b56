"""Speech-to-text engines behind one Protocol."""

from interview.speech.stt.base import SpeechToText

__all__ = ["SpeechToText"]
