"""The results report over HTTP without a language model: JSON, Markdown and HTML."""

from html.parser import HTMLParser

from interview.report.metrics import NO_EVALUATION
from tests.api.helpers import auth, start, wait_for_results

ANSWER = "I built the order service and I carried the pager for it for two years."


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.external += [v for k, v in attrs if k in ("src", "href") and v]


def ended_session(api) -> dict:
    session = start(api, candidate_name="Ada <b>Lovelace</b>")
    headers = auth(session["token"])
    assert api.post(f"/{session['session_id']}/transcript", json={"text": ANSWER}, headers=headers)
    assert api.post(f"/{session['session_id']}/end", headers=headers).status_code == 200
    return session


def test_status_names_the_offline_interviewer(api):
    session = start(api)
    body = api.get(f"/{session['session_id']}/status", headers=auth(session["token"])).json()
    assert body["interviewer"] == {
        "engine": "scripted",
        "mode": "normal",
        "degraded_turns": 0,
        "last_reason": None,
    }


def test_offline_report_has_metrics_and_no_invented_evaluation(api):
    report = wait_for_results(api, ended_session(api)).json()
    assert report["evaluation"] is None and report["evaluation_note"] == NO_EVALUATION
    assert report["evaluation_status"] == "not_configured"
    metrics = report["metrics"]
    assert metrics["questions_covered"] == 1 and 0 < metrics["talk_ratio"] < 1
    assert metrics["talk_time_ratio"] is None  # typed answers have no speaking time
    assert report["questions"][0]["response_delay_seconds"] is not None


def test_markdown_and_html_documents(api):
    session = ended_session(api)
    assert wait_for_results(api, session).status_code == 200
    path, headers = f"/{session['session_id']}/results", auth(session["token"])
    markdown = api.get(path, params={"format": "md"}, headers=headers)
    assert markdown.status_code == 200
    assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    assert markdown.text.startswith("# Interview report: Ada")
    assert ANSWER in markdown.text and NO_EVALUATION in markdown.text
    page = api.get(path, params={"format": "html"}, headers=headers)
    assert page.headers["content-type"].startswith("text/html")
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in page.text  # the name is text, not markup
    links = Links()
    links.feed(page.text)
    assert links.external == []
    assert api.get(path, params={"format": "json"}, headers=headers).json()["session_id"]


def test_an_unknown_format_is_a_clear_422(api):
    session = ended_session(api)
    response = api.get(
        f"/{session['session_id']}/results",
        params={"format": "pdf"},
        headers=auth(session["token"]),
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_documents_need_the_token(api):
    session = ended_session(api)
    response = api.get(f"/{session['session_id']}/results", params={"format": "html"})
    assert response.status_code == 401 and response.json()["error"]


def test_a_new_evaluation_needs_a_language_model(api):
    session = ended_session(api)
    assert wait_for_results(api, session).status_code == 200
    path, headers = f"/{session['session_id']}/results/evaluation", auth(session["token"])
    refused = api.post(path, headers=headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "evaluation_not_configured"
    assert api.post(path).status_code == 401
    assert api.post(path, headers=auth("wrong")).status_code == 404
