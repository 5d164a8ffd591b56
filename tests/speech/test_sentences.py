"""split_sentences: pieces for text-to-speech that keep every word, in order."""

from __future__ import annotations

import itertools
import random

import pytest

from interview.speech.sentences import MAX_CHARS, MIN_CHARS, split_sentences

TEXTS = [
    "Thanks. Tell me about a system you built, e.g. a queue or a cache, and what broke first.",
    'He said "Stop." Then he left. She asked "why?" and nobody answered.',
    "Great! Why did you choose Postgres? What would you change now?",
    "When you joined the team, the deploys took an hour, the tests were flaky, and nobody "
    "owned the alerts; what did you change first, and why did you pick that over the rest?",
    "Ok.",
    "Dr. Smith joined in 2019 (after the merger.) She led 3.5 teams, i.e. most of them.",
    "Wait... what? Really!",
    "  Leading and trailing spaces.   Many   spaces  inside.  ",
    "Line one is a sentence.\nLine two is another one.\n\nAnd a third after a blank line.",
    "A very long sentence without any clause boundary that just goes on and on about the "
    "architecture of the billing platform and its many services",
    "Hi. Yes. No. Ok. Sure. Fine.",
]


def check_invariants(text: str, pieces: list[str]) -> None:
    # Every word, in order, nothing added: joining the pieces gives the text back.
    assert " ".join(pieces).split() == text.split()
    for piece in pieces:
        assert piece, f"empty piece in {pieces!r}"
        assert piece == piece.strip()
    # Short fragments ride with a neighbour, unless the whole text is short.
    if len(pieces) > 1:
        assert all(len(piece) >= MIN_CHARS for piece in pieces), pieces


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_keep_every_word_in_order(text: str) -> None:
    check_invariants(text, split_sentences(text))


def random_text(rng: random.Random) -> str:
    words = ["we", "built", "a", "queue", "service", "Postgres", "3.5", "e.g.", "i.e.", "Dr."]
    words += ["latency", "on-call", "(really)", '"fast"', "it's", "U.S.", "x" * 30]
    enders = [".", "!", "?", "...", '."', '?"', ".)", ",", ";", ":", ""]
    parts = []
    for _ in range(rng.randint(1, 12)):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))
        parts.append(sentence + rng.choice(enders))
    return rng.choice([" ", "  ", "\n", " \t "]).join(parts)


def test_random_texts_keep_every_word_in_order() -> None:
    rng = random.Random(20240611)
    for _ in range(500):
        text = random_text(rng)
        check_invariants(text, split_sentences(text))


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_blank_text_gives_no_pieces(text: str) -> None:
    assert split_sentences(text) == []


def test_sentences_are_split_at_their_ends() -> None:
    assert split_sentences("Why did you choose Postgres? What would you change now?") == [
        "Why did you choose Postgres?",
        "What would you change now?",
    ]
    assert split_sentences("That went well! Let us move on to testing.") == [
        "That went well!",
        "Let us move on to testing.",
    ]


def test_a_sentence_ending_inside_quotes_or_brackets_is_split_after_them() -> None:
    assert split_sentences('She told the team "ship it today." Then the pager went off.') == [
        'She told the team "ship it today."',
        "Then the pager went off.",
    ]
    assert split_sentences("We rewrote the importer (in Go.) It was twice as fast.") == [
        "We rewrote the importer (in Go.)",
        "It was twice as fast.",
    ]


def test_a_dot_inside_a_number_is_not_a_sentence_end() -> None:
    assert split_sentences("I led the team for 3.5 years at the bank.") == [
        "I led the team for 3.5 years at the bank."
    ]


def test_long_sentences_are_cut_at_clause_boundaries_under_max_chars() -> None:
    text = (
        "When you joined the team, the deploys took an hour, the tests were flaky, and nobody "
        "owned the alerts; what did you change first, and why did you pick that over the rest?"
    )
    assert len(text) > 2 * MAX_CHARS
    pieces = split_sentences(text)
    assert len(pieces) >= 3
    assert all(len(piece) <= MAX_CHARS for piece in pieces), pieces
    # Each cut is at a clause boundary: every piece but the last ends with , ; or :
    assert all(piece[-1] in ",;:" for piece in pieces[:-1]), pieces
    assert " ".join(pieces) == text
    # Clauses are packed greedily: no two neighbours would have fitted in one piece.
    for left, right in itertools.pairwise(pieces):
        assert len(f"{left} {right}") > MAX_CHARS


def test_a_long_sentence_without_clause_boundaries_stays_whole() -> None:
    text = (
        "A very long sentence without any clause boundary that just goes on and on about the "
        "architecture of the billing platform and its many services."
    )
    assert len(text) > MAX_CHARS
    assert split_sentences(text) == [text]


def test_a_sentence_that_fits_is_not_cut_at_its_commas() -> None:
    text = "First, tell me, briefly, what you built."
    assert len(text) <= MAX_CHARS
    assert split_sentences(text) == [text]


def test_a_short_fragment_rides_with_the_next_piece() -> None:
    assert split_sentences("Thanks. Tell me about the last system you built.") == [
        "Thanks. Tell me about the last system you built."
    ]
    assert split_sentences("Ok. Sure. Now tell me about testing.") == [
        "Ok. Sure. Now tell me about testing."
    ]


def test_a_short_last_fragment_rides_with_the_piece_before() -> None:
    assert split_sentences("Tell me about the last system you built. Thanks.") == [
        "Tell me about the last system you built. Thanks."
    ]


def test_a_text_of_only_short_fragments_is_one_piece() -> None:
    assert split_sentences("Hi. Yes. No.") == ["Hi. Yes. No."]
    assert split_sentences("Ok.") == ["Ok."]
