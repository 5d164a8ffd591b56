"""The results report as Markdown for the demo page.

interview/report/ has no Markdown rendering yet (the lead is adding `?format=md`); until it does,
the page renders the report JSON here: metrics, questions with their answers, and the
evaluation when there is one. Only what the report holds is shown: nothing is computed anew.
"""

from __future__ import annotations

from collections.abc import Iterable

from interview.report import Report

RECOMMENDATIONS = {
    "strong_yes": "Strong yes",
    "yes": "Yes",
    "no": "No",
    "strong_no": "Strong no",
}


def render_report(report: Report) -> str:
    m = report.metrics
    lines = [
        f"## Results: {_text(report.plan.title)}",
        "",
        f"Session `{report.session_id}` · role {_text(report.plan.role)} · ended "
        f"({_text(report.end_reason or 'unknown reason')})",
        "",
        "| Metric | Value |",
        "|---|---|",
        f"| Duration | {_seconds(m.duration_seconds)} |",
        f"| Questions covered | {m.questions_covered} of {m.questions_total} |",
        f"| Answers | {m.candidate_turns} ({m.answer_words} words) |",
        f"| Speaking time | {_seconds(m.speaking_seconds)} |",
        f"| Words per minute | {_number(m.words_per_minute)} |",
        f"| Mean response delay | {_seconds(m.mean_response_delay_seconds)} |",
        f"| Candidate's share of the words | {_percent(m.talk_ratio)} |",
        "",
    ]
    lines += _evaluation(report)
    lines += ["### Questions", ""]
    for question in report.questions:
        state = "answered" if question.answered else "asked" if question.asked else "not asked"
        lines.append(f"**{question.index + 1}. {_text(question.text)}** ({state})")
        lines.append("")
        for follow_up in question.follow_ups_asked:
            lines.append(f"- Follow-up: {_text(follow_up)}")
        for answer in question.answers:
            how = "spoken" if answer.source == "voice" else "typed"
            lines.append(f"- > {_text(answer.text)}  \n  {how}, {answer.words} words")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _evaluation(report: Report) -> list[str]:
    evaluation = report.evaluation
    if evaluation is None:
        note = report.evaluation_note or "No evaluation."
        return ["### Evaluation", "", f"_{_text(note)}_", ""]
    verdict = RECOMMENDATIONS.get(evaluation.recommendation, evaluation.recommendation)
    lines = [
        "### Evaluation",
        "",
        f"**Recommendation:** {verdict} (confidence {evaluation.confidence}; "
        f"model {_text(evaluation.model)})",
        "",
        _text(evaluation.summary),
        "",
        f"| Competency | Score ({evaluation.scale.min}-{evaluation.scale.max}) | Why |",
        "|---|---|---|",
    ]
    for c in evaluation.competencies:
        score = str(c.score) if c.assessed and c.score is not None else "not assessed"
        lines.append(f"| {_cell(c.name)} | {score} | {_cell(c.justification)} |")
    lines.append("")
    lines += _bullets("Strengths", evaluation.strengths)
    lines += _bullets("Concerns", evaluation.concerns)
    if evaluation.flagged_quotes:
        lines += _bullets(
            "Quotes dropped (not in the answers)",
            (f"{q.competency}: “{q.quote}” ({q.reason})" for q in evaluation.flagged_quotes),
        )
    return lines


def _bullets(title: str, items: Iterable[str]) -> list[str]:
    items = list(items)
    if not items:
        return []
    return [f"**{title}**", "", *(f"- {_text(item)}" for item in items), ""]


def _text(value: str) -> str:
    # Candidate and model text is shown as text: no HTML, no Markdown links or headings.
    return (
        value.replace("\\", "\\\\")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("[", "\\[")
        .replace("]", "\\]")
        .replace("#", "\\#")
        .replace("*", "\\*")
        .replace("_", "\\_")
        .replace("`", "\\`")
        .replace("\n", " ")
    )


def _cell(value: str) -> str:
    return _text(value).replace("|", "\\|")


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 60:
        return f"{int(value // 60)} min {round(value % 60)} s"
    return f"{value:.1f} s"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f} %"
