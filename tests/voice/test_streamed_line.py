import asyncio

import pytest

from interview.interviewer import LINE_COMPLETE
from interview.voice.streamed_line import StreamedLine


class Synthesis:
    """Stands in for the speech cache: records what is sent to synthesis, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []

    def piece(self, sentence: str, voice: str | None, first: bool) -> asyncio.Future:
        self.sent.append((sentence, first))
        future = asyncio.get_running_loop().create_future()
        future.set_result(sentence)
        return future


def texts(line: StreamedLine) -> list[str]:
    return [piece for piece, _ in line.pieces]


async def test_each_sentence_goes_to_synthesis_as_soon_as_it_is_complete():
    synthesis = Synthesis()
    line = StreamedLine(synthesis, "af_heart")
    line.add("Could you tell me")
    assert texts(line) == []
    line.add(" more about that? What was")
    assert texts(line) == ["Could you tell me more about that?"]
    assert synthesis.sent[0] == ("Could you tell me more about that?", True)
    line.add(" your part?")
    assert len(line.pieces) == 1  # the last sentence may still grow
    line.finish("Could you tell me more about that? What was your part?")
    assert texts(line) == ["Could you tell me more about that?", "What was your part?"]
    assert synthesis.sent[1] == ("What was your part?", False)
    assert line.done


async def test_a_very_short_sentence_rides_with_the_next():
    line = StreamedLine(Synthesis(), None)
    line.add("Thanks. ")
    assert texts(line) == []
    line.add("Now tell me about an incident you resolved. ")
    assert texts(line) == ["Thanks. Now tell me about an incident you resolved."]


async def test_a_line_known_whole_is_split_at_once():
    line = StreamedLine.of(Synthesis(), None, "Hello there, welcome. Tell me about your project.")
    assert line.done and texts(line) == ["Hello there, welcome.", "Tell me about your project."]


async def test_a_different_final_line_is_spoken_only_if_nothing_was_queued():
    line = StreamedLine(Synthesis(), None)
    line.add("Could you")  # no sentence complete: nothing spoken yet
    line.finish("Thank you. Next question: how do you debug?")
    assert " ".join(texts(line)) == "Thank you. Next question: how do you debug?"


async def test_a_final_line_that_contradicts_what_was_spoken_adds_nothing():
    line = StreamedLine(Synthesis(), None)
    line.add("Tell me more about the outage. And")
    line.finish("Something else entirely.")
    assert texts(line) == ["Tell me more about the outage."]


async def test_a_line_cut_after_its_first_sentence_ends_there():
    line = StreamedLine(Synthesis(), None)
    line.add("Tell me more about the outage. What was")
    line.finish("Tell me more about the outage.")
    assert texts(line) == ["Tell me more about the outage."] and line.done


async def test_the_speaker_waits_for_pieces_and_for_the_end():
    line = StreamedLine(Synthesis(), None)
    waiting = asyncio.ensure_future(line.wait_for(0))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    line.add("Tell me about your last project. ")
    piece = await asyncio.wait_for(waiting, 1)
    assert piece is not None and piece[0] == "Tell me about your last project."
    after = asyncio.ensure_future(line.wait_for(1))
    await asyncio.sleep(0.01)
    line.abort()
    assert await asyncio.wait_for(after, 1) is None


@pytest.mark.parametrize("cut", [1, 5, 17, 30])
async def test_pieces_always_add_up_to_the_line(cut):
    text = "Thanks, that helps. Could you walk me through the rollback? Who decided?"
    line = StreamedLine(Synthesis(), None)
    for i in range(0, len(text), cut):
        line.add(text[i : i + cut])
    line.finish(text)
    assert " ".join(texts(line)) == text


async def test_the_last_sentence_goes_as_soon_as_the_line_is_complete():
    line = StreamedLine(Synthesis(), None)
    line.add("Thank you for that answer. How do you debug a failing service?")
    assert texts(line) == ["Thank you for that answer."]
    line.add(LINE_COMPLETE)  # the reply is not committed yet, but no more words will come
    assert texts(line) == ["Thank you for that answer.", "How do you debug a failing service?"]
    assert not line.done
    line.finish("Thank you for that answer. How do you debug a failing service?")
    assert len(line.pieces) == 2 and line.done
