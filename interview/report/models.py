"""The shape of a results report, the same in storage and in the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


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
    # Why there is no evaluation (no language model configured, nothing to evaluate).
    evaluation_note: str | None = None
    generated_at: datetime
