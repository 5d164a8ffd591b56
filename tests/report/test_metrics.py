from datetime import UTC, datetime, timedelta

from interview.config import PACKAGE_DIR
from interview.plans import PlanCatalog
from interview.report import build_report
from interview.report.render import render
from interview.store import SessionRow, TurnRow

PLAN = PlanCatalog.load(PACKAGE_DIR / "plans").get("backend-engineer-screen")
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def t(index, role, kind, text, start, end, source="voice", q=0) -> TurnRow:
    return TurnRow(
        session_id="s",
        index=index,
        role=role,
        kind=kind,
        text=text,
        source=source,
        question_index=q,
        started_at=at(start),
        ended_at=at(end),
    )


def test_voice_and_text_metrics():
    session = SessionRow(
        id="s",
        user_id="u",
        candidate_name="Ada",
        plan_id=PLAN.id,
        started_at=at(0),
        ended_at=at(100),
        end_reason="candidate",
    )
    turns = [
        t(0, "interviewer", "question", "Q1", 0, 10),
        t(1, "candidate", "answer", "one two three four five six", 12, 15),  # 6 words, 3 s
        t(2, "interviewer", "follow_up", "Why?", 16, 18),
        t(3, "candidate", "answer", "because it was simpler", 19.5, 21.5),  # 4 words, 2 s
        t(4, "interviewer", "question", "Q2", 22, 30, q=1),
        t(5, "candidate", "answer", "typed answer here", 40, 40, source="text", q=1),
    ]
    report = build_report(PLAN, session, turns, now=at(101))
    m = report.metrics
    assert (m.candidate_turns, m.answer_words) == (3, 13)
    assert m.speaking_seconds == 5.0  # only spoken answers have a speaking time
    assert m.words_per_minute == 120.0  # 10 spoken words in 5 s
    assert m.mean_response_delay_seconds == round((2 + 1.5 + 10) / 3, 2)
    assert (m.questions_covered, m.questions_total) == (2, 5)
    assert m.duration_seconds == 100
    q1, q2, q3 = report.questions[:3]
    assert q1.asked and q1.answered and q1.follow_ups_asked == ["Why?"]
    assert [a.speaking_seconds for a in q1.answers] == [3.0, 2.0]
    assert q2.answers[0].speaking_seconds is None and q2.answers[0].source == "text"
    assert not q3.asked and not q3.answered and q3.answers == []
    assert report.candidate_name == "Ada" and report.plan.id == PLAN.id


def test_text_only_interview_has_no_speaking_time():
    session = SessionRow(id="s", user_id="u", plan_id=PLAN.id)
    turns = [
        t(0, "interviewer", "question", "Q1", 0, 0, source="text"),
        t(1, "candidate", "answer", "an answer", 30, 30, source="text"),
    ]
    m = build_report(PLAN, session, turns, now=at(31)).metrics
    assert m.speaking_seconds is None and m.words_per_minute is None
    assert m.duration_seconds is None  # the session has not recorded start and end
    assert m.mean_response_delay_seconds == 30


def test_talk_ratio_and_response_delay_per_question():
    session = SessionRow(id="s", user_id="u", plan_id=PLAN.id, started_at=at(0), ended_at=at(60))
    turns = [
        t(0, "interviewer", "question", "one two three four", 0, 4),  # 4 words, 4 s
        t(1, "candidate", "answer", "a b c d e f g h i j k l", 6, 18),  # 12 words, 12 s
        t(2, "interviewer", "question", "five six seven eight", 19, 23, q=1),  # 4 words, 4 s
        t(3, "candidate", "answer", "m n o p", 26, 30, q=1),  # 4 words, 4 s
    ]
    report = build_report(PLAN, session, turns, now=at(61))
    m = report.metrics
    assert m.interviewer_words == 8
    assert m.talk_ratio == round(16 / 24, 3)
    assert m.talk_time_ratio == round(16 / 24, 3)
    assert [q.response_delay_seconds for q in report.questions[:3]] == [2.0, 3.0, None]


def test_no_talk_time_ratio_when_a_turn_was_typed():
    session = SessionRow(id="s", user_id="u", plan_id=PLAN.id, started_at=at(0), ended_at=at(60))
    turns = [
        t(0, "interviewer", "question", "Q1", 0, 4),
        t(1, "candidate", "answer", "typed", 6, 6, source="text"),
    ]
    m = build_report(PLAN, session, turns, now=at(61)).metrics
    assert m.talk_time_ratio is None and m.talk_ratio == 0.5


def test_talk_time_ratio_of_a_voice_interview_reported_before_its_closing_line_played():
    # The closing line is saved (as text) and the report made before the line is spoken.
    session = SessionRow(id="s", user_id="u", plan_id=PLAN.id, started_at=at(0), ended_at=at(30))
    turns = [
        t(0, "interviewer", "question", "Q1", 0, 8),
        t(1, "candidate", "answer", "one two three four", 10, 18),
        t(2, "interviewer", "close", "Thanks, goodbye.", 19, 19, source="text"),
    ]
    m = build_report(PLAN, session, turns, now=at(31)).metrics
    assert m.talk_time_ratio == 0.5


def test_the_report_counts_the_interviewer_lines_that_were_the_scripted_stand_in():
    session = SessionRow(id="s", user_id="u", plan_id=PLAN.id, started_at=at(0), ended_at=at(30))
    stand_in = t(2, "interviewer", "question", "Q2", 12, 14, q=1)
    stand_in.degraded_reason = "APIStatusError (HTTP 500)"
    turns = [
        t(0, "interviewer", "question", "Q1", 0, 8),
        t(1, "candidate", "answer", "one two three four", 9, 11),
        stand_in,
    ]
    report = build_report(PLAN, session, turns, now=at(31))
    assert report.metrics.interviewer_fallback_lines == 1
    assert "| Interviewer lines from the scripted fallback" in render(report, "md")
    assert "scripted fallback" not in render(build_report(PLAN, session, turns[:2], at(31)), "md")
