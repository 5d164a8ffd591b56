import pytest

from interview.report.quotes import QuoteMatch, find_quote, normalize, said_at

TURNS = [
    (1, "I built the billing service in Go, and I owned its data model."),
    (3, "We rolled back within ten minutes; then I wrote the post-mortem."),
]


@pytest.mark.parametrize(
    ("quote", "turn", "verbatim"),
    [
        ("I built the billing service in Go", 1, "I built the billing service in Go"),
        # Case and punctuation do not count; the evidence is the candidate's own spelling.
        ("i BUILT the billing service in go,", 1, "I built the billing service in Go"),
        ("\u201cwe rolled back within ten minutes\u201d", 3, "We rolled back within ten minutes"),
        (
            "rolled back within ten minutes then I wrote",
            3,
            "rolled back within ten minutes; then I wrote",
        ),
        ("the post mortem", 3, "the post-mortem"),
        # A quote inside a hyphenated word is only what it quotes.
        ("mortem", 3, "mortem"),
    ],
)
def test_verbatim_quotes_are_found_in_their_turn(quote, turn, verbatim):
    assert find_quote(quote, TURNS) == QuoteMatch(turn, verbatim)


@pytest.mark.parametrize(
    "quote",
    [
        "I built the payments service in Go",  # one word changed
        "I single-handedly rewrote the platform",  # invented
        "service in Go I owned",  # words dropped from the middle
        "ill",  # a fragment of a word is not a quote ("billing")
        "   ",
    ],
)
def test_anything_else_is_not_found(quote):
    assert find_quote(quote, TURNS) is None


def test_normalize_keeps_words_and_order():
    assert normalize("  Don\u2019t   PANIC, it's fine!") == "don't panic it's fine"


def test_a_match_knows_where_its_words_are_in_the_turn():
    text = "Well, I think: we moved the PostgreSQL cluster in 2019."
    match = find_quote('"we moved the postgresql cluster"', [(3, text)])
    assert match is not None
    assert text[match.start : match.end] == match.text == "we moved the PostgreSQL cluster"


# The accurate pass's words for the text above: [word, start, end], leading spaces as Whisper's.
WORDS = [
    [" Well,", 0.1, 0.4],
    [" I", 0.5, 0.6],
    [" think:", 0.6, 0.9],
    [" we", 1.5, 1.6],
    [" moved", 1.6, 1.9],
    [" the", 1.9, 2.0],
    [" PostgreSQL", 2.0, 2.7],
    [" cluster", 2.7, 3.1],
    [" in", 3.1, 3.2],
    [" 2019.", 3.2, 3.9],
]


def test_a_quote_is_placed_at_the_time_its_first_word_was_said():
    text = "Well, I think: we moved the PostgreSQL cluster in 2019."
    match = find_quote("the PostgreSQL cluster in 2019", [(3, text)])
    assert match is not None
    assert said_at(text, WORDS, match.start) == 1.9
    assert said_at(text, WORDS, 0) == 0.1
    # No word timings (a typed answer, a live-only one): no time.
    assert said_at(text, None, match.start) is None


def test_a_word_spelled_otherwise_in_the_text_does_not_shift_the_others():
    # The text's "p95" where the words say " P95": the word after it still lands in place.
    text = "Our p95 latency dropped."
    words = [[" Our", 0.0, 0.2], [" P95", 0.3, 0.8], [" latency", 0.9, 1.4], [" dropped.", 1.5, 2]]
    assert said_at(text, words, text.index("latency")) == 0.9
