"""Split a reply into short pieces, so the first is spoken while the rest are synthesized.

Pieces are sentences, and long sentences are cut again at a comma or semicolon: Kokoro runs at
about 0.6-0.7x real time here, so pieces of similar length keep synthesis ahead of playback,
where one long sentence after a short one would leave a gap in the interviewer's voice.
"""

from __future__ import annotations

import re

# End of sentence: . ! or ? (possibly closing a quote or bracket) before whitespace.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")
_CLAUSE = re.compile(r"(?<=[,;:])\s+")
MIN_CHARS = 12  # shorter fragments ("Thanks.") ride with the next piece
MAX_CHARS = 70  # longer sentences are cut at a clause boundary


def split_sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for sentence in (p.strip() for p in SENTENCE_END.split(text.strip())):
        if sentence:
            pieces.extend(_clauses(sentence))
    return _merge_short(pieces)


def _clauses(sentence: str) -> list[str]:
    if len(sentence) <= MAX_CHARS:
        return [sentence]
    parts = _CLAUSE.split(sentence)
    chunks: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} {part}".strip()
        if current and len(candidate) > MAX_CHARS:
            chunks.append(current)
            current = part
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def _merge_short(pieces: list[str]) -> list[str]:
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        candidate = f"{carry} {piece}".strip() if carry else piece
        if len(candidate) < MIN_CHARS:
            carry = candidate
            continue
        merged.append(candidate)
        carry = ""
    if carry:
        if merged:
            merged[-1] = f"{merged[-1]} {carry}"
        else:
            merged.append(carry)
    return merged
