"""How long a pause must last before the candidate's answer counts as finished, from the evidence.

At each pause (interview.voice.turn_detector reports one after `decide_after` seconds of
silence) there are two pieces of evidence: Smart Turn's probability that the audio so far ends a
turn, and the transcript so far. Neither is trusted alone: Smart Turn hears a falling pitch
before a thinking pause as an ending, and Whisper puts a full stop after cut-off speech. The
words decide the direction (an unfinished sentence always waits for the patient fallback), the
model decides how soon a finished-looking answer gets its reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


class Verdict(StrEnum):
    finished = "finished"  # a complete sentence: supports an early reply
    unfinished = "unfinished"  # the sentence visibly goes on: wait patiently
    unsure = "unsure"  # nothing either way (or too little text to tell)


# Words after which an English sentence rarely ends. Kept to closed classes (conjunctions,
# prepositions, articles, possessives, auxiliaries, subject pronouns, fillers): open classes
# (verbs, nouns) end sentences all the time. Words that often do end one ("that", "it", "her",
# "in", "before", "well") are left out; a false "unfinished" only costs patience.
CONJUNCTIONS = _words(
    "and but or nor because cause cuz although though unless whereas whether if than which whose"
)
PREPOSITIONS = _words(
    "about across against along among around at beneath beside besides between beyond by "
    "despite during except for from into like near of onto per through throughout toward "
    "towards under underneath until upon versus via with within without to as on"
)
ARTICLES = _words("a an the this these those another every each some any no")
POSSESSIVES = _words("my your his its our their")
SUBJECTS = _words("i we they he she i'm we're you're they're he's she's it's")
AUXILIARIES = _words(
    "am is are was were be been being have has had do does did will would shall should can "
    "could may might must gonna wanna i've we've i'd we'd i'll we'll let's"
)
FILLERS = _words("um umm uh uhh er erm hmm mm like so")
# Adverbs that stand before the verb they qualify ("I usually [pause] ask them to...").
PRE_VERB = _words("usually always often sometimes never just also probably generally typically")
UNFINISHED_WORDS = (
    CONJUNCTIONS | PREPOSITIONS | ARTICLES | POSSESSIVES | SUBJECTS | FILLERS | PRE_VERB
)
# "that" ends "I did that." but opens a clause after a copula or a verb of saying and knowing
# ("What I learned is that [pause] ...").
THAT_OPENERS = _words(
    "is was are were be said say says think thought learned learnt realised realized knew "
    "know mean means meant believe found noticed decided agreed saw showed so"
)
# An auxiliary ends a sentence right after its subject ("It was.", "We did."), and hardly ever
# elsewhere ("The first thing I did was").
PRONOUNS = _words("i we you they he she it that this there")
# Two-word endings where the second word is one of the above and the sentence is done.
FINISHED_PAIRS = frozenset(
    tuple(pair.split())
    for pair in (
        "think so", "hope so", "guess so", "believe so", "said so", "do so", "did so",
        "more so", "even so", "move on", "moved on", "moving on", "carry on", "went on",
        "later on", "early on", "like so",
    )
)  # fmt: skip
# Opening words of a clause that needs another one ("When the cache is cold."); without a comma
# in the sentence the main clause is probably still to come.
SUBORDINATORS = _words("if when whenever although though because since unless while whereas once")
# Words that announce a list; a list with one item so far is in progress. A bare "first" at the
# very end announces its first item ("There were two reasons, first."); a bare "one" may be an
# answer ("Yes, one.").
FIRST_ITEM = re.compile(
    r"(?:^|[,.;:!?]\s*|\band\s+)"
    r"(?:(first(?:ly)?|first of all|one)\b[,\s]|(first(?:ly)?|first of all)[.:!?]?$)"
)
LATER_ITEM = re.compile(
    r"\b(second(?:ly)?|third(?:ly)?|then|next|after that|also|finally|lastly|last)\b"
)
CLOSING_ITEM = re.compile(r"\b(third(?:ly)?|finally|lastly|in the end|overall)\b")
# What a candidate says before the content ("To be honest, um"): a transcript of nothing else
# has not started its answer.
OPENERS = re.compile(
    r"^(?:(?:so|well|um|uh|hmm|and|but|honestly|basically|actually|"
    r"to be honest|to be fair|i mean|you know|i think|i guess|i'd say|let me think|let me see|"
    r"good question|that's a good question|that's a great question|in my experience|"
    r"for me|from my side|in my opinion)[\s,.!?]*)+$"
)
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
MIN_FINISHED_WORDS = 2  # "Yes." is an answer; a lone "The." is not, and one word is unsure


def text_verdict(text: str) -> Verdict:
    """Whether the transcript so far reads as a finished answer.

    Punctuation only counts against an ending (a trailing comma, hyphen or ellipsis): Whisper
    puts a full stop after cut-off speech too, so a full stop proves nothing.
    """
    stripped = text.strip().lower()
    if not stripped:
        return Verdict.unsure
    if stripped.endswith(("...", "\u2026", ",", "-", "\u2014", "\u2013", ":", ";")):
        return Verdict.unfinished
    words = WORD.findall(stripped.replace("\u2019", "'"))
    if not words:
        return Verdict.unsure
    last, before = words[-1], (words[-2] if len(words) > 1 else "")
    if (before, last) not in FINISHED_PAIRS and (
        last in UNFINISHED_WORDS
        or (last in AUXILIARIES and before not in PRONOUNS)
        or (last == "that" and before in THAT_OPENERS)
        or (last == "then" and before in CONJUNCTIONS)
    ):
        return Verdict.unfinished
    if _list_in_progress(stripped):
        return Verdict.unfinished
    if (before, last) not in FINISHED_PAIRS and OPENERS.match(stripped.replace("\u2019", "'")):
        return Verdict.unfinished
    last_sentence = _last_sentence(stripped)
    first = WORD.findall(last_sentence)[:1]
    if first and first[0] in SUBORDINATORS and "," not in last_sentence:
        return Verdict.unsure
    if len(words) < MIN_FINISHED_WORDS:
        return Verdict.unsure
    return Verdict.finished


def _last_sentence(text: str) -> str:
    parts = [part for part in re.split(r"[.!?]+\s+", text.rstrip(".!? ")) if part.strip()]
    return parts[-1] if parts else text


def _list_in_progress(text: str) -> bool:
    start = FIRST_ITEM.search(text)
    if start is None:
        return False
    rest = text[start.end() :]
    # "First X, then Y." has two items and ends; "First X." has one and goes on.
    return LATER_ITEM.search(rest) is None and CLOSING_ITEM.search(rest) is None


@dataclass(frozen=True)
class EndpointingOptions:
    """The thresholds: every wait is the silence (seconds after the last speech) that ends the
    turn. The defaults are the best of `python -m benchmarks.end_of_turn --tune` (run of
    2026-12-06 10:34, evidence gathered from 0.12 s of silence with LocalWhisper's short window,
    1152 combinations replayed on the TUNE split of benchmarks/eot_clips.py): within a mean wait
    after finished answers of the old fixed 0.8 s, the fewest cut-offs on thinking pauses up to
    2.0 s (11 of 192 on TUNE at 794 ms, against 144 for the fixed 0.8 s and 112 for Smart Turn
    alone; the previous defaults gave 26 at 474 ms). benchmarks/README.md has the held-out
    result and the whole trade-off."""

    # Nothing ends sooner. The detector gathers the evidence from an earlier moment
    # (DetectorOptions.decide_after, 0.12 s), so it is mostly ready by then.
    shortest_wait: float = 0.25
    # The patient fallback (DetectorOptions.end_silence): what an unfinished sentence waits.
    fallback: float = 2.5
    # Finished words and a model probability at least this: reply after `finished_wait`. Both
    # must agree: Whisper puts a full stop after cut-off speech, so finished-looking words alone
    # cut off a quarter of the thinking pauses the model doubts.
    finished_probability: float = 0.5
    # ... and the wait then (at least `shortest_wait`).
    finished_wait: float = 0.4
    # Finished words, but the model objects (probability below `finished_probability`): as
    # patient as unfinished words.
    finished_objection_wait: float = 2.5
    # Unsure words: the wait slides from `unsure_slow_wait` (probability 0) down to
    # `unsure_fast_wait` (probability 1).
    unsure_fast_wait: float = 0.4
    unsure_slow_wait: float = 1.5
    # No words (STT failed or gave nothing): the model alone, with the same slide but safer.
    # Not tuned (no clip lacked words); set above the unsure slide by hand.
    no_text_fast_wait: float = 0.9
    no_text_slow_wait: float = 2.5

    def __post_init__(self) -> None:
        if not 0 < self.shortest_wait <= self.fallback:
            raise ValueError("need 0 < shortest_wait <= fallback")
        if not 0.0 <= self.finished_probability <= 1.0:
            raise ValueError("finished_probability is a probability")


class EndpointingPolicy:
    def __init__(self, options: EndpointingOptions | None = None) -> None:
        self.options = options or EndpointingOptions()

    def required_silence(
        self, probability: float | None, text: str | None, *, patience: float = 1.0
    ) -> float:
        """Seconds of silence after which the turn ends, given Smart Turn's probability (None:
        not available) and the transcript so far (None: STT failed). `patience` > 1 stretches
        every wait (and the fallback) for questions that deserve thinking time."""
        o = self.options
        if patience <= 0:
            raise ValueError("patience must be positive")
        longest = o.fallback * patience
        verdict = Verdict.unsure if text is None else text_verdict(text)
        if verdict is Verdict.unfinished:
            return longest
        if text is None or not text.strip():
            fast, slow = o.no_text_fast_wait, o.no_text_slow_wait
        elif verdict is Verdict.finished:
            if probability is None:
                return self._bounded(o.unsure_fast_wait * patience, longest)
            if probability >= o.finished_probability:
                return self._bounded(o.finished_wait * patience, longest)
            return self._bounded(o.finished_objection_wait * patience, longest)
        else:
            fast, slow = o.unsure_fast_wait, o.unsure_slow_wait
        p = 0.0 if probability is None else min(1.0, max(0.0, probability))
        return self._bounded((slow - p * (slow - fast)) * patience, longest)

    def _bounded(self, seconds: float, longest: float) -> float:
        return min(longest, max(self.options.shortest_wait, seconds))
