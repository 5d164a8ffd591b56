"""Check that a quote offered as evidence is really in the candidate's words."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_NOT_WORD = re.compile(r"[^\w']+")


def normalize(text: str) -> str:
    """Case, curly quotes, punctuation and spacing do not count; the words and their order do.

    A transcript has no authoritative punctuation, and a model quoting it may add a comma or
    drop a full stop; it must not change a word.
    """
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return " ".join(_NOT_WORD.sub(" ", text).split())


def find_quote(quote: str, turns: Sequence[tuple[int, str]]) -> int | None:
    """The index of the first candidate turn that contains `quote`, or None.

    `turns` are (turn index, text) of the candidate's turns only: a line the interviewer said
    is not evidence about the candidate.
    """
    needle = normalize(quote)
    if not needle:
        return None
    for index, text in turns:
        # Padded with spaces so a quote must match whole words ("art" is not in "start").
        if f" {needle} " in f" {normalize(text)} ":
            return index
    return None
