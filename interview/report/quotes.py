"""Check that a quote offered as evidence is really in the candidate's words."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_NOT_WORD = re.compile(r"[^\w']+")
# Punctuation around the first and last word that the quote itself did not need.
_EDGE = ' ,;:()[]"\u201c\u201d'


def normalize(text: str) -> str:
    """Case, curly quotes, punctuation and spacing do not count; the words and their order do.

    A transcript has no authoritative punctuation, and a model quoting it may add a comma or
    drop a full stop; it must not change a word.
    """
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return " ".join(_NOT_WORD.sub(" ", text).split())


@dataclass(frozen=True)
class QuoteMatch:
    turn_index: int
    # The candidate's own words as the transcript has them: the model's copy may differ in
    # case and punctuation, and the report calls its evidence verbatim.
    text: str
    # Where those words are in the turn's text (character offsets).
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


def find_quote(quote: str, turns: Sequence[tuple[int, str]]) -> QuoteMatch | None:
    """The first candidate turn that contains `quote`, with the matching words, or None.

    `turns` are (turn index, text) of the candidate's turns only: a line the interviewer said
    is not evidence about the candidate.
    """
    needle = normalize(quote).split()
    if not needle:
        return None
    for index, text in turns:
        # Word by word, so a quote must match whole words ("art" is not in "start").
        words = _words(text)
        for start in range(len(words) - len(needle) + 1):
            if [w for w, _, _ in words[start : start + len(needle)]] == needle:
                first, last = words[start], words[start + len(needle) - 1]
                span = text[first[1] : last[2]]
                stripped = span.strip(_EDGE)
                begin = first[1] + (len(span) - len(span.lstrip(_EDGE)))
                return QuoteMatch(index, stripped, begin, begin + len(stripped))
    return None


def said_at(text: str, words: Sequence[Sequence[Any]] | None, offset: int) -> float | None:
    """When the character at `offset` of a turn's `text` was said: the start of the word it
    falls in (or the next one), from the accurate pass's `words` ([word, start, end], whose
    stripped words appear in `text` in order). None without word timings."""
    if not words:
        return None
    position = 0
    for word, start, *_ in words:
        token = str(word).strip()
        found = text.find(token, position) if token else -1
        if found < 0:
            continue  # a word the text does not spell the same way: the next one places it
        position = found + len(token)
        if position > offset:
            return round(float(start), 2)
    return None


_WORDLIKE = re.compile(r"[\w'\u2018\u2019]+")


def _words(text: str) -> list[tuple[str, int, int]]:
    """The normalized words of `text`, each with its span in the original: its own span
    ("known" in "well-known"), or its whole token's where normalizing changed the word count
    (a compatibility character that NFKC splits)."""
    words = []
    for token in re.finditer(r"\S+", text):
        expected = normalize(token.group()).split()
        parts = [
            (normalize(m.group()), token.start() + m.start(), token.start() + m.end())
            for m in _WORDLIKE.finditer(token.group())
        ]
        if [word for word, _, _ in parts] == expected:
            words += parts
        else:
            words += [(word, token.start(), token.end()) for word in expected]
    return words
