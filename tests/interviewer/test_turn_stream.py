import json

import pytest

from interview.interviewer import LINE_COMPLETE
from interview.interviewer.prompts import MAX_SAY_CHARS, TurnAction
from interview.interviewer.turn_stream import MalformedTurn, TurnStream, spoken

ALLOWED = [TurnAction.follow_up, TurnAction.next_question]


def feed_all(stream: TurnStream, text: str, size: int = 3) -> None:
    for i in range(0, len(text), size):
        stream.feed(text[i : i + size])


def test_line_is_handed_on_in_pieces_once_the_decision_is_known():
    pieces: list[str] = []
    stream = TurnStream(ALLOWED, pieces.append)
    arguments = json.dumps({"action": "next_question", "say": "Thanks. What did you build next?"})
    stream.feed(arguments[:40])
    assert stream.action is TurnAction.next_question
    feed_all(stream, arguments[40:])
    action, line = stream.finish()
    assert action is TurnAction.next_question
    assert line == "Thanks. What did you build next?"
    assert len(pieces) > 2 and "".join(pieces) == line


def test_nothing_is_handed_on_before_the_action_is_complete():
    pieces: list[str] = []
    stream = TurnStream(ALLOWED, pieces.append)
    # `say` first: it is held until the action (after it) is complete.
    arguments = '{"say": "Tell me more about the outage.", "action": "follow_up"}'
    feed_all(stream, arguments[:-3])
    assert pieces == []
    stream.feed(arguments[-3:])
    assert stream.finish() == (TurnAction.follow_up, "Tell me more about the outage.")
    assert "".join(pieces) == "Tell me more about the outage."


def test_a_forbidden_action_fails_before_anything_is_spoken():
    pieces: list[str] = []
    stream = TurnStream(ALLOWED, pieces.append)
    with pytest.raises(MalformedTurn, match="close"):
        feed_all(stream, '{"action": "close", "say": "Goodbye then."}')
    assert pieces == []


@pytest.mark.parametrize(
    "arguments",
    ['{"action": "follow_up", "say": "Unfinished', '{"action": "follow_up"}', "[1, 2]", "{}"],
)
def test_malformed_arguments_are_refused(arguments):
    stream = TurnStream(ALLOWED, None)
    with pytest.raises(MalformedTurn):
        feed_all(stream, arguments)
        stream.finish()


def test_markdown_and_layout_are_not_spoken():
    pieces: list[str] = []
    stream = TurnStream(ALLOWED, pieces.append)
    say = "**Great.**\n\n  What was   the `hardest` part?  "
    feed_all(stream, json.dumps({"action": "follow_up", "say": say}), size=2)
    _, line = stream.finish()
    assert line == "Great. What was the hardest part?"
    assert "".join(pieces) == line


def test_a_monologue_is_cut_to_the_spoken_limit():
    pieces: list[str] = []
    stream = TurnStream(ALLOWED, pieces.append)
    feed_all(stream, json.dumps({"action": "follow_up", "say": "word " * 400}), size=50)
    _, line = stream.finish()
    assert len(line) <= MAX_SAY_CHARS and "".join(pieces) == line


def test_spoken_cleaning_keeps_prefixes_true():
    text = "## Hi *there*,\n\tcould you  explain?"
    for cut in range(len(text)):
        assert spoken(text).startswith(spoken(text[:cut]).rstrip())


def test_the_line_is_complete_when_its_string_closes_not_when_the_call_ends():
    pieces: list[str] = []
    stream = TurnStream(ALLOWED, pieces.append)
    arguments = json.dumps({"action": "follow_up", "say": "Tell me more. Who decided?"})
    feed_all(stream, arguments[:-2])  # everything but the closing quote and brace
    assert LINE_COMPLETE not in pieces
    stream.feed(arguments[-2])  # the closing quote of "say"
    assert pieces[-1] == LINE_COMPLETE and stream.said_all
    stream.feed(arguments[-1])
    stream.finish()
    assert pieces.count(LINE_COMPLETE) == 1
    assert "".join(pieces) == "Tell me more. Who decided?"
