"""The shape of a results report, the same in storage and in the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


class PlanSummary(BaseModel):
    id: str
    title: str
    role: str


class Answer(BaseModel):
    turn_index: int
    text: str
    source: Literal["voice", "text"]
    words: int
    speaking_seconds: float | None
    response_delay_seconds: float | None
    transcription: Literal["typed", "live", "accurate", "live_only"] | None = Field(
        default=None,
        description="Which pass the text comes from: typed (exact), accurate (the accurate "
        "speech-to-text pass), live_only (the live pass's text, flagged: the accurate pass "
        "failed, timed out or is off; transcription_note says which).",
    )
    transcription_note: str | None = None


class QuestionReport(BaseModel):
    index: int
    id: str
    text: str
    competency: str
    asked: bool
    answered: bool
    follow_ups_asked: list[str]
    answers: list[Answer]
    # From the end of the question to the start of the first answer to it.
    response_delay_seconds: float | None = None


class Metrics(BaseModel):
    duration_seconds: float | None
    candidate_turns: int
    answer_words: int
    interviewer_words: int = 0
    # The candidate's share of the words spoken in the interview (0-1).
    talk_ratio: float | None = None
    # The candidate's share of the speaking time, when every turn was spoken and timed.
    talk_time_ratio: float | None = None
    speaking_seconds: float | None
    words_per_minute: float | None
    mean_response_delay_seconds: float | None
    questions_covered: int
    questions_total: int
    # The interviewer's lines that are the scripted stand-in because the language model failed.
    interviewer_fallback_lines: int = 0


class Evidence(BaseModel):
    quote: str = Field(description="Verbatim from the candidate's turn `turn_index`.")
    turn_index: int
    at_seconds: float | None = Field(
        default=None,
        description="When the quote's first word was said, in seconds from the start of the "
        "answer (turn `turn_index`), from the accurate pass's word timings; null for a typed "
        "answer or one without them.",
    )


class FlaggedQuote(BaseModel):
    competency: str
    quote: str
    reason: str


class CompetencyScore(BaseModel):
    id: str
    name: str
    assessed: bool = Field(description="False when no answer gave evidence for it.")
    score: int | None = Field(description="On the plan's scale; null when not assessed.")
    justification: str
    evidence: list[Evidence]


class Scale(BaseModel):
    min: int
    max: int


class Evaluation(BaseModel):
    model: str
    scale: Scale
    competencies: list[CompetencyScore]
    strengths: list[str]
    concerns: list[str]
    recommendation: Literal["strong_yes", "yes", "no", "strong_no"] = Field(
        description="Whether to advance the candidate to the next round."
    )
    confidence: Literal["low", "medium", "high"]
    summary: str
    flagged_quotes: list[FlaggedQuote] = Field(
        description="Quotes the model gave that are not in the candidate's answers: dropped "
        "from the evidence and listed here so a reader knows."
    )


# Where the report's evaluation stands: "ready" (it is in the report); "not_configured" (no
# language model for reports); "nothing_to_evaluate" (the candidate gave no answer);
# "pending_retry" (it failed and is tried again in the background, or an operator asked for a
# new one); "failed" (the background attempts are spent; an operator may ask again).
EvaluationStatus = Literal[
    "ready", "not_configured", "nothing_to_evaluate", "pending_retry", "failed"
]


class TranscriptQuality(BaseModel):
    """How exact the answers' text is: how many answers came from each pass."""

    typed: int = 0
    accurate: int = 0
    live_only: int = 0
    flagged_turns: list[int] = Field(
        default_factory=list,
        description="Candidate turns whose text is the live pass's only (less exact): quotes "
        "from them may be one misheard word away from what was said.",
    )


class Report(BaseModel):
    status: Literal["ready"] = "ready"
    session_id: str
    user_id: str
    candidate_name: str | None
    plan: PlanSummary
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    questions: list[QuestionReport]
    metrics: Metrics
    evaluation: Evaluation | None = None
    transcript: TranscriptQuality = Field(default_factory=TranscriptQuality)
    evaluation_status: EvaluationStatus = Field(
        default="not_configured",
        description="ready: the evaluation is in the report. not_configured: no language model "
        "evaluates reports. nothing_to_evaluate: the candidate gave no answer. pending_retry: "
        "the evaluation failed and is tried again in the background (or an operator asked for "
        "a new one). failed: every attempt failed; POST .../results/evaluation asks again.",
    )
    # Why there is no evaluation (no language model configured, nothing to evaluate, the
    # model's failure and what happens next).
    evaluation_note: str | None = None
    generated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _status_of_reports_stored_before_it(cls, data: Any) -> Any:
        """Reports stored before evaluation_status existed: read it from what they hold."""
        if isinstance(data, dict) and "evaluation_status" not in data:
            if data.get("evaluation") is not None:
                status = "ready"
            elif str(data.get("evaluation_note") or "").startswith("Nothing to evaluate"):
                status = "nothing_to_evaluate"
            else:
                status = "not_configured"
            data = {**data, "evaluation_status": status}
        return data


class EvaluationScheduled(BaseModel):
    """A new evaluation of the report was asked for: it runs in the background, and the report
    (GET .../results) holds it once done, with a `results` event."""

    session_id: str
    status: Literal["scheduled"] = "scheduled"
