"""EndpointingPolicy and text_verdict on transcripts as Whisper writes them (a full stop even after
cut-off speech). The phrases are the tests' own: none is in benchmarks/eot_clips.py."""

from __future__ import annotations

import pytest

from interview.voice.endpointing import (
    EndpointingOptions,
    EndpointingPolicy,
    Verdict,
    text_verdict,
)

UNFINISHED = [
    # trailing conjunctions and "because"
    "I picked that library because.",
    "We rolled it back and.",
    "It was either the network or.",
    "The tests were green but.",
    # trailing prepositions
    "Then I moved the job queue to.",
    "I spent most of that year working on.",
    "We stored the sessions in Redis with.",
    "Most of the time went into reviewing code from.",
    # trailing articles, determiners and possessives
    "The first thing I changed was the.",
    "So I opened a ticket with a.",
    "I explained it to my.",
    "We rewrote their.",
    # trailing auxiliaries and copulas, not right after a subject
    "What surprised me the most was.",
    "The reason the build failed is.",
    "The thing I would do differently is.",
    # trailing subject pronouns
    "After the demo we.",
    "When the alarm fired I.",
    # fillers
    "I handled the customer escalations, um.",
    "It was mostly, uh.",
    "Honestly the latency was, like.",
    "We had no monitoring at all so.",
    "Er.",
    # "that" opening a clause, "then" after a conjunction, an adverb before its verb
    "The lesson for me was that.",
    "My manager said that.",
    "We paused the release and then.",
    "On a bad day I usually.",
    "She always.",
    # nothing but an opener: the answer has not started
    "To be fair.",
    "Honestly, that's a good question.",
    "So, I mean...",
    "Well, in my experience,",
    # a list in progress
    "There were a few problems. First, the logs were useless.",
    "Firstly, nobody owned the alerts.",
    "I had two worries about the launch, first.",
    "There are three things I check: firstly.",
    "And first of all.",
    # trailing punctuation of speech that stops mid-way
    "I think the answer is...",
    "We tried three different approaches, ",
    "The plan was simple -",
    "We shipped it on Friday\u2026",
]

FINISHED = [
    "I fixed the memory leak in the image service.",
    "We hired two more engineers and the backlog shrank.",
    "It was.",
    "Yes, we did.",
    "I think so.",
    "I hope so.",
    "After that we decided to move on.",
    "We cleaned up the alerts early on.",
    "The deploy took twelve minutes.",
    "I wrote the runbook for it.",
    "She approved it in 2021.",
    "We fixed the bug and told her.",
    "I did that.",
    "Our team finished first.",
    "Yes, one.",
    "First we wrote the tests, then we refactored.",
    "First, I listen. Second, I write it down. Finally, I follow up.",
    "If the disk fills up, the service pages the on-call engineer.",
    "Honestly, it went well.",
    "Thank you.",
    "Yes.",  # short, with an ending
]

UNSURE = [
    "",
    "   ",
    "Sure",  # one word: too little to tell
    "When the queue backs up.",  # a subordinate clause with no main clause yet
    "If we had more budget.",
]


@pytest.mark.parametrize("text", UNFINISHED)
def test_unfinished_sentences_mean_wait(text: str) -> None:
    assert text_verdict(text) is Verdict.unfinished


@pytest.mark.parametrize("text", FINISHED)
def test_finished_sentences_support_an_early_reply(text: str) -> None:
    # "Yes." is one word with a full stop: unsure is acceptable only for it.
    expected = {Verdict.finished, Verdict.unsure} if text == "Yes." else {Verdict.finished}
    assert text_verdict(text) in expected


@pytest.mark.parametrize("text", UNSURE)
def test_too_little_or_dangling_text_is_unsure(text: str) -> None:
    assert text_verdict(text) is Verdict.unsure


def test_a_full_stop_does_not_make_a_cut_off_sentence_finished() -> None:
    # Whisper's full stop after cut-off speech, and the same words with no punctuation at all.
    assert text_verdict("We migrated the billing data to.") is Verdict.unfinished
    assert text_verdict("We migrated the billing data to") is Verdict.unfinished
    assert text_verdict("We migrated the billing data") is Verdict.finished


def test_numbers_and_curly_apostrophes_are_words() -> None:
    assert text_verdict("I joined the team in 2019.") is Verdict.finished
    assert text_verdict("That\u2019s what we\u2019d.") is Verdict.unfinished


POLICY = EndpointingPolicy()
OPTIONS = POLICY.options


def test_unfinished_words_wait_for_the_patient_fallback_whatever_the_model_says() -> None:
    for probability in (0.0, 0.5, 0.99, None):
        assert POLICY.required_silence(probability, "I moved the data to.") == OPTIONS.fallback


def test_finished_words_and_a_model_that_agrees_reply_soonest() -> None:
    soonest = max(OPTIONS.shortest_wait, OPTIONS.finished_wait)
    assert POLICY.required_silence(0.9, "We shipped it in March.") == soonest
    low_but_enough = OPTIONS.finished_probability
    assert POLICY.required_silence(low_but_enough, "We shipped it.") == soonest
    waits = [POLICY.required_silence(p, "We shipped it.") for p in (0.0, 0.3, 0.6, 0.9)]
    assert min(waits) == soonest
    quick = EndpointingPolicy(EndpointingOptions(finished_wait=0.25))
    assert quick.required_silence(0.9, "We shipped it.") == OPTIONS.shortest_wait


def test_finished_words_and_a_model_that_objects_wait_a_while() -> None:
    below = max(0.0, OPTIONS.finished_probability - 0.01)
    wait = POLICY.required_silence(below, "We shipped it in March.")
    assert OPTIONS.finished_wait < wait <= OPTIONS.fallback
    custom = EndpointingPolicy(EndpointingOptions(finished_objection_wait=1.2))
    assert custom.required_silence(below, "We shipped it in March.") == 1.2


def test_unsure_words_are_graded_by_the_model() -> None:
    waits = [POLICY.required_silence(p, "When the queue backs up.") for p in (0.0, 0.5, 1.0)]
    assert waits == sorted(waits, reverse=True)
    assert waits[0] > waits[-1]
    assert all(OPTIONS.shortest_wait <= w <= OPTIONS.fallback for w in waits)


def test_no_text_means_the_model_alone_with_a_safer_wait() -> None:
    for probability in (0.0, 0.5, 1.0):
        without = POLICY.required_silence(probability, None)
        with_unsure_text = POLICY.required_silence(probability, "When the queue backs up.")
        assert without >= with_unsure_text
        assert OPTIONS.shortest_wait <= without <= OPTIONS.fallback
    assert POLICY.required_silence(1.0, None) > OPTIONS.shortest_wait


def test_patience_stretches_waits_and_the_fallback() -> None:
    text = "I moved the data to."
    assert POLICY.required_silence(0.1, text, patience=2.0) == 2 * OPTIONS.fallback
    unsure = "When the queue backs up."
    assert POLICY.required_silence(0.5, unsure, patience=1.5) > POLICY.required_silence(0.5, unsure)
    with pytest.raises(ValueError):
        POLICY.required_silence(0.5, text, patience=0)


def test_every_wait_is_within_the_detector_bounds() -> None:
    texts = [*UNFINISHED, *FINISHED, *UNSURE, None]
    for text in texts:
        for probability in (None, 0.0, 0.05, 0.3, 0.7, 1.0, 1.5, -1.0):
            wait = POLICY.required_silence(probability, text)
            assert OPTIONS.shortest_wait <= wait <= OPTIONS.fallback, (text, probability)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        EndpointingOptions(shortest_wait=3.0, fallback=2.5)
    with pytest.raises(ValueError):
        EndpointingOptions(finished_probability=1.5)
