"""Errors shared by the speech engines."""

from __future__ import annotations


class SpeechOutputError(Exception):
    """A remote speech engine answered, but not with usable output (no text, no audio, or audio
    that is not the PCM asked for). The message is ours and safe to log: it never quotes the
    server's body, which may echo the request."""
