import re
from html.parser import HTMLParser

from harness.interview_model import FABRICATED
from interview.domain import TurnKind
from interview.report import build_report
from interview.report.evaluation import check
from interview.report.metrics import NO_EVALUATION
from interview.report.render import render
from tests.report.test_evaluation import PLAN, QUESTIONS, SESSION, T0, TURNS, raw, turn

XSS = '<script>alert("x")</script><img src="https://evil.example/x.png">'


def evaluated_report():
    competencies = raw().model_dump()["competencies"]
    competencies[0]["evidence"] = ["I built the billing service in Go", FABRICATED]
    evaluation = check(raw(competencies=competencies), PLAN, QUESTIONS, TURNS, "eval-model")
    report = build_report(PLAN, SESSION, TURNS, now=T0)
    return report.model_copy(update={"evaluation": evaluation, "evaluation_note": None})


class Assets(HTMLParser):
    """Every URL the page would load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_markdown_has_the_recommendation_scores_evidence_and_flags():
    text = render(evaluated_report(), "md")
    assert "## Recommendation: Yes: advance (confidence: medium)" in text
    assert "| System design | 4 |" in text
    assert '- "I built the billing service in Go" (turn 1)' in text
    assert "## Flagged quotes" in text and FABRICATED in text
    # Questions never asked are marked, not scored.
    assert f"### Q3. {PLAN.questions[2].text}" in text
    assert re.search(r"not asked", text)
    assert "| Talk ratio (candidate's share of words) |" in text


def test_html_is_self_contained_and_escapes_the_interview():
    turns = [*TURNS, turn(4, "interviewer", PLAN.questions[2].text, q=2)]
    turns.append(turn(5, "candidate", XSS, q=2))
    report = build_report(PLAN, SESSION, turns, now=T0)
    page = render(report, "html")
    parser = Assets()
    parser.feed(page)
    assert parser.urls == [] and parser.scripts == 0
    assert "&lt;script&gt;" in page
    assert "<style>" in page and "@media print" in page


def test_html_with_an_evaluation():
    page = render(evaluated_report(), "html")
    assert "Yes: advance" in page and "not assessed" in page and "Flagged quotes" in page


def test_metrics_only_report_says_why_there_is_no_evaluation():
    report = build_report(PLAN, SESSION, TURNS, now=T0)
    assert NO_EVALUATION in render(report, "md")
    assert NO_EVALUATION in render(report, "html")


def test_markdown_cannot_be_shaped_by_the_interview():
    turns = [*TURNS, turn(4, "interviewer", PLAN.questions[2].text, q=2)]
    turns.append(
        turn(5, "candidate", "[click](https://evil.example) **bold** <b>x</b> | # no", q=2)
    )
    text = render(build_report(PLAN, SESSION, turns, now=T0), "md")
    assert (
        "> \\[click\\](https://evil.example) \\*\\*bold\\*\\* \\<b\\>x\\</b\\> \\| \\# no" in text
    )


def test_markdown_escapes_the_models_follow_ups():
    # In LLM mode a follow-up is the model's own words, which may echo the candidate's.
    follow_up = turn(4, "interviewer", "See [this](https://evil.example) | **now**", q=1)
    follow_up.kind = TurnKind.follow_up
    text = render(build_report(PLAN, SESSION, [*TURNS, follow_up], now=T0), "md")
    assert "Follow-up: See \\[this\\](https://evil.example) \\| \\*\\*now\\*\\*" in text
