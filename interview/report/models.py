"""The shape of a results report, the same in storage and in the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


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


class Metrics(BaseModel):
    duration_seconds: float | None
    candidate_turns: int
    answer_words: int
    speaking_seconds: float | None
    words_per_minute: float | None
    mean_response_delay_seconds: float | None
    questions_covered: int
    questions_total: int


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
    evaluation: None = None
    evaluation_note: str
    generated_at: datetime
