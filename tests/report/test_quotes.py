import pytest

from interview.report.quotes import QuoteMatch, find_quote, normalize

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
