"""Errors shared by the speech engines."""

from __future__ import annotations

from collections.abc import Sequence


class SpeechOutputError(Exception):
    """A remote speech engine answered, but not with usable output (no text, no audio, or audio
    that is not the PCM asked for). The message is ours and safe to log: it never quotes the
    server's body, which may echo the request."""


class UnknownVoice(LookupError):
    """A chosen voice not named like a voice, or that the loaded speech engine does not have.

    `valid` lists the engine's voices, or is None when no engine is loaded to ask.
    """

    def __init__(self, voice: str, valid: Sequence[str] | None) -> None:
        super().__init__(voice)
        self.voice = voice
        self.valid = list(valid) if valid is not None else None
