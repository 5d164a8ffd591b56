"""Interview plans: data files under interview/plans/, loaded and validated once."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Competency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    description: str


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    text: str = Field(min_length=1)
    competency: str
    follow_ups: list[str] = Field(default_factory=list)
    # A reflective question deserves thinking time: every end-of-turn wait on its answers is
    # stretched this much (2.0 hears out pauses twice as long).
    patience: float = Field(default=1.0, ge=1.0, le=4.0)


class ScoringScale(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: int = 1
    max: int = 5

    @model_validator(mode="after")
    def _ordered(self) -> ScoringScale:
        if self.min >= self.max:
            raise ValueError("scale min must be below max")
        return self


class InterviewPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str
    role: str
    greeting: str = Field(min_length=1)
    closing: str = Field(min_length=1)
    time_budget_minutes: float = Field(gt=0)
    voice: str | None = None
    scale: ScoringScale = Field(default_factory=ScoringScale)
    competencies: list[Competency] = Field(min_length=1)
    questions: list[Question] = Field(min_length=1)
    # The words of the role's domain (products, tools, jargon) the accurate transcription pass is
    # told to expect: names and terms a speech model would otherwise mishear.
    vocabulary: list[str] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> InterviewPlan:
        known = {c.id for c in self.competencies}
        for question in self.questions:
            if question.competency not in known:
                raise ValueError(
                    f"question {question.id!r} names unknown competency {question.competency!r}"
                )
        if any(not term.strip() for term in self.vocabulary):
            raise ValueError("vocabulary terms must not be empty")
        ids = [q.id for q in self.questions]
        if len(ids) != len(set(ids)):
            raise ValueError("question ids must be unique")
        return self


class PlanError(Exception):
    """A plan file that cannot be used; the message names the file and the problem."""


class UnknownPlan(LookupError):
    def __init__(self, plan_id: str, valid: list[str]) -> None:
        super().__init__(plan_id)
        self.plan_id = plan_id
        self.valid = valid


class PlanCatalog:
    """The plans the service offers, keyed by id."""

    def __init__(self, plans: list[InterviewPlan]) -> None:
        self._plans = {plan.id: plan for plan in plans}

    @classmethod
    def load(cls, directory: Path) -> PlanCatalog:
        plans: list[InterviewPlan] = []
        seen: dict[str, Path] = {}
        files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        for path in files:
            plan = _read_plan(path)
            if plan.id in seen:
                raise PlanError(f"{path}: plan id {plan.id!r} already defined in {seen[plan.id]}")
            seen[plan.id] = path
            plans.append(plan)
        if not plans:
            raise PlanError(f"no interview plans found in {directory}")
        return cls(plans)

    def get(self, plan_id: str) -> InterviewPlan:
        try:
            return self._plans[plan_id]
        except KeyError:
            raise UnknownPlan(plan_id, self.ids()) from None

    def ids(self) -> list[str]:
        return sorted(self._plans)

    def all(self) -> list[InterviewPlan]:
        return [self._plans[i] for i in self.ids()]


def _read_plan(path: Path) -> InterviewPlan:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return InterviewPlan.model_validate(data)
    except (OSError, ValueError, yaml.YAMLError, ValidationError) as exc:
        raise PlanError(f"{path}: {exc}") from exc
