"""Plain, verifiable metrics from the transcript: no judgement, nothing invented."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from statistics import mean

from interview.domain import Transcription
from interview.plans import InterviewPlan
from interview.report.models import (
    Answer,
    Metrics,
    PlanSummary,
    QuestionReport,
    Report,
    TranscriptQuality,
)
from interview.store import SessionRow, TurnRow

NO_EVALUATION = "Metrics only: no language model is configured to evaluate the answers."


def build_report(
    plan: InterviewPlan, session: SessionRow, turns: Sequence[TurnRow], now: datetime
) -> Report:
    questions = [
        QuestionReport(
            index=i,
            id=q.id,
            text=q.text,
            competency=q.competency,
            asked=False,
            answered=False,
            follow_ups_asked=[],
            answers=[],
        )
        for i, q in enumerate(plan.questions)
    ]
    answers: list[Answer] = []
    previous: TurnRow | None = None
    for turn in turns:
        qi = turn.question_index
        target = questions[qi] if qi is not None and 0 <= qi < len(questions) else None
        if turn.role == "interviewer" and target is not None:
            if turn.kind == "question":
                target.asked = True
            elif turn.kind == "follow_up":
                target.follow_ups_asked.append(turn.text)
        elif turn.role == "candidate":
            answer = _answer(turn, previous)
            answers.append(answer)
            if target is not None:
                if not target.answers:
                    target.response_delay_seconds = answer.response_delay_seconds
                target.answers.append(answer)
                target.answered = True
        previous = turn

    words = sum(a.words for a in answers)
    interviewer = [t for t in turns if t.role == "interviewer"]
    interviewer_words = sum(len(t.text.split()) for t in interviewer)
    spoken = [a.speaking_seconds for a in answers if a.speaking_seconds is not None]
    speaking = round(sum(spoken), 2) if spoken else None
    delays = [a.response_delay_seconds for a in answers if a.response_delay_seconds is not None]
    duration = (
        round((session.ended_at - session.started_at).total_seconds(), 2)
        if session.started_at and session.ended_at
        else None
    )
    return Report(
        session_id=session.id,
        user_id=session.user_id,
        candidate_name=session.candidate_name,
        plan=PlanSummary(id=plan.id, title=plan.title, role=plan.role),
        started_at=session.started_at,
        ended_at=session.ended_at,
        end_reason=session.end_reason,
        questions=questions,
        transcript=transcript_quality(answers),
        metrics=Metrics(
            duration_seconds=duration,
            candidate_turns=len(answers),
            answer_words=words,
            interviewer_words=interviewer_words,
            talk_ratio=round(words / (words + interviewer_words), 3)
            if words + interviewer_words
            else None,
            talk_time_ratio=_talk_time_ratio(turns),
            speaking_seconds=speaking,
            # Only spoken answers have a speaking time, so only they give a rate.
            words_per_minute=round(
                sum(a.words for a in answers if a.speaking_seconds is not None) / speaking * 60, 1
            )
            if speaking
            else None,
            mean_response_delay_seconds=round(mean(delays), 2) if delays else None,
            questions_covered=sum(q.answered for q in questions),
            questions_total=len(questions),
            interviewer_fallback_lines=sum(t.degraded_reason is not None for t in interviewer),
        ),
        evaluation_note=NO_EVALUATION,
        generated_at=now,
    )


def _talk_time_ratio(turns: Sequence[TurnRow]) -> float | None:
    # The report of a voice interview is made as soon as the closing line is saved, before it
    # is played and timed: the conversation's time is what was spoken up to it.
    turns = list(turns)
    while turns and turns[-1].role == "interviewer" and turns[-1].source != "voice":
        turns.pop()
    # Typed answers and unspoken lines have no duration, so a time ratio would be made up.
    if not turns or any(t.source != "voice" for t in turns):
        return None
    seconds = {"candidate": 0.0, "interviewer": 0.0}
    for turn in turns:
        seconds[turn.role] += max(0.0, (turn.ended_at - turn.started_at).total_seconds())
    total = seconds["candidate"] + seconds["interviewer"]
    return round(seconds["candidate"] / total, 3) if total else None


def _answer(turn: TurnRow, previous: TurnRow | None) -> Answer:
    delay = None
    if previous is not None and previous.role == "interviewer":
        delay = round(max(0.0, (turn.started_at - previous.ended_at).total_seconds()), 2)
    speaking = (
        round((turn.ended_at - turn.started_at).total_seconds(), 2)
        if turn.source == "voice"
        else None
    )
    transcription = turn.transcription
    if transcription is None:  # stored before the accurate pass existed
        transcription = Transcription.typed if turn.source == "text" else Transcription.live_only
    return Answer(
        turn_index=turn.index,
        text=turn.text,
        source="voice" if turn.source == "voice" else "text",
        words=len(turn.text.split()),
        speaking_seconds=speaking,
        response_delay_seconds=delay,
        transcription=transcription.value,
        transcription_note=turn.transcription_note,
    )


def transcript_quality(answers: Sequence[Answer]) -> TranscriptQuality:
    flagged = [a.turn_index for a in answers if a.transcription in ("live", "live_only")]
    return TranscriptQuality(
        typed=sum(a.transcription == "typed" for a in answers),
        accurate=sum(a.transcription == "accurate" for a in answers),
        live_only=len(flagged),
        flagged_turns=flagged,
    )
