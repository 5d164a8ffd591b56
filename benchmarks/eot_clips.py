"""The end-of-turn evaluation set: interview answers, labelled, split into TUNE and HELD-OUT.

Two kinds of answer. A *thinking* answer is spoken in two parts with a silence between them at a
point where the sentence cannot end ("...tested the migration on [1.0 s] a full copy of the
production data."): ending the turn in that silence is a cut-off. A *finished* answer is one
sentence followed by silence: the wait from its last word to the end of the turn is what the
candidate sits through before the reply. Each thinking answer is heard with every pause of
`PAUSES`.

The split is by text and by voice: the thresholds of interview.voice.endpointing are tuned on
TUNE only, and HELD-OUT (other texts, other voices) is the result. None of these texts may be
used by tests (tests/ have their own phrases), so tuning never sees a test's clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Split = Literal["tune", "heldout"]
SPLITS: tuple[Split, ...] = ("tune", "heldout")
PAUSES = (0.5, 1.0, 1.5, 2.0, 2.5)  # seconds of thinking silence, one clip each
TRAILING_SILENCE = 4.0  # after the last word: longer than any policy's fallback


@dataclass(frozen=True)
class Voice:
    engine: Literal["kokoro", "espeak"]
    name: str  # a Kokoro voice, or an espeak-ng voice (-v)
    rate_wpm: int = 160  # espeak-ng only


# Kokoro: US and UK, female and male; espeak-ng: different accents and a variant voice.
VOICES: dict[Split, tuple[Voice, ...]] = {
    "tune": (
        Voice("kokoro", "af_heart"),
        Voice("kokoro", "bm_george"),
        Voice("espeak", "en-us", 165),
        Voice("espeak", "en-gb-x-rp", 150),
    ),
    "heldout": (
        Voice("kokoro", "am_michael"),
        Voice("kokoro", "bf_emma"),
        Voice("espeak", "en-us+f3", 155),
        Voice("espeak", "en-gb-scotland", 170),
    ),
}

# (before the pause, after it): the first part stops where the sentence cannot end.
THINKING: dict[Split, tuple[tuple[str, str], ...]] = {
    "tune": (
        (
            "In hindsight we should have tested the migration on",
            "a full copy of the production data.",
        ),
        (
            "The outage happened because",
            "a certificate expired on the load balancer.",
        ),
        (
            "I would start by adding an index to the",
            "orders table on the customer column.",
        ),
        (
            "My manager asked me to take over the",
            "billing service when the lead left.",
        ),
        (
            "We split the monolith into",
            "four services over about eighteen months.",
        ),
        (
            "The hardest part of that project was",
            "getting three teams to agree on one schema.",
        ),
        (
            "When two teammates disagree I usually",
            "ask each of them to write down their proposal.",
        ),
        (
            "First we reproduced the bug locally, and",
            "then we bisected the commits until one stood out.",
        ),
        (
            "I think the main trade-off here is between",
            "consistency and how fast the page loads.",
        ),
        (
            "To be honest, um",
            "I underestimated how long the data cleanup would take.",
        ),
        (
            "The cache was returning stale prices for",
            "about ten minutes after every deploy.",
        ),
        (
            "What I learned from that review is that",
            "small pull requests get much better feedback.",
        ),
    ),
    "heldout": (
        (
            "I was responsible for the on-call rotation and",
            "the runbooks for our payments platform.",
        ),
        (
            "The query was slow because it scanned the",
            "whole events table for every request.",
        ),
        (
            "We chose Postgres over",
            "a document store because our data is very relational.",
        ),
        (
            "My approach to mentoring juniors is to",
            "pair with them on real tickets every week.",
        ),
        (
            "After the incident we added alerts for",
            "queue depth and consumer lag.",
        ),
        (
            "The biggest mistake I made in that role was",
            "not asking for help early enough.",
        ),
        (
            "I'd measure the impact by comparing the",
            "error rate before and after the release.",
        ),
        (
            "So the first step would be",
            "to profile the endpoint under realistic load.",
        ),
        (
            "There were two reasons for the rewrite: first",
            "the old code had no tests at all.",
        ),
        (
            "Our deploys took forty minutes, so",
            "we moved the slowest integration tests to a nightly job.",
        ),
        (
            "I pushed back on the deadline because",
            "the security review had not even started.",
        ),
        (
            "If I had more time I would have written",
            "a proper load test for the new API.",
        ),
    ),
}

# Complete answers, one sentence each.
FINISHED: dict[Split, tuple[str, ...]] = {
    "tune": (
        "I led the migration of our search cluster to a managed service.",
        "We cut the build time from twenty minutes to six.",
        "I would use a queue so the upload never blocks the request.",
        "The root cause was a race condition in the retry logic.",
        "I told my manager the estimate was wrong and gave her a new one.",
        "Mostly I write Go, and some TypeScript for internal tools.",
        "Yes, I have run incident reviews for the whole department.",
        "It took about three weeks, including the rollout.",
        "We agreed to ship the smaller version first and measure it.",
        "I keep a list of what I promised and check it every morning.",
        "Latency dropped by half once we batched the writes.",
        "That project taught me to write the design document before the code.",
    ),
    "heldout": (
        "I built the internal dashboard that the support team uses every day.",
        "We replaced the cron jobs with a proper workflow engine.",
        "I would shard the table by tenant and keep a small lookup service.",
        "The fix was to make the handler idempotent.",
        "I apologised to the customer and refunded the order myself.",
        "My strongest language is Python, and I am comfortable with Rust.",
        "No, I have not used Kubernetes in production.",
        "The launch went well and we hit our target in the first month.",
        "I asked for feedback after every sprint, and it helped a lot.",
        "We moved the team to trunk-based development last year.",
        "Our error budget was ninety-nine point nine percent.",
        "In the end the client renewed the contract for two more years.",
    ),
}


@dataclass(frozen=True)
class Clip:
    """One labelled answer: `parts` spoken one after another with `pause` seconds between."""

    split: Split
    kind: Literal["thinking", "finished"]
    parts: tuple[str, ...]
    voice: Voice
    pause: float | None = None  # the thinking pause (thinking answers only)

    @property
    def text(self) -> str:
        return " ".join(self.parts)

    @property
    def name(self) -> str:
        pause = f"{self.pause:.1f}s" if self.pause is not None else "end"
        return f"{self.split}/{self.voice.name}/{pause}/{self.text[:40]}"


def clips(split: Split) -> list[Clip]:
    """Every clip of a split: each thinking text with each pause, each finished text, in each of
    the split's voices."""
    result: list[Clip] = []
    for voice in VOICES[split]:
        for first, second in THINKING[split]:
            for pause in PAUSES:
                result.append(Clip(split, "thinking", (first, second), voice, pause))
        for text in FINISHED[split]:
            result.append(Clip(split, "finished", (text,), voice))
    return result
