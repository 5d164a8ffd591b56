"""Bad input on a real server, on each backend: unencodable text in any field, answers that show
nothing, odd headers, wrong methods: a JSON 4xx every time, nothing stored, no 500."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import auth, start

JSON = {"Content-Type": "application/json"}
# Raw JSON, as a client sends it: the escapes decode to lone surrogates (or a reversed pair).
SURROGATES = ("abc \\ud800 def", "\\udfff", "\\udc00\\ud800")


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


@pytest.mark.parametrize("escaped", SURROGATES)
def test_lone_surrogates_are_refused_in_every_field(api: httpx.Client, escaped: str):
    for body in (
        f'{{"user_id": "{escaped}"}}',
        f'{{"user_id": "u", "candidate_name": "{escaped}"}}',
        f'{{"user_id": "u", "plan_id": "{escaped}"}}',
        f'{{"user_id": "u", "metadata": {{"note": "{escaped}"}}}}',
        f'{{"user_id": "u", "metadata": {{"{escaped}": 1}}}}',
        f'{{"user_id": "u", "metadata": {{"a": [{{"b": ["{escaped}"]}}]}}}}',
    ):
        error = error_of(api.post("/start", content=body, headers=JSON), 422)
        assert error["code"] == "invalid_request", body
    session = start(api)
    sid, headers = session["session_id"], {**auth(session["token"]), **JSON}
    answer = api.post(f"/{sid}/transcript", content=f'{{"text": "{escaped}"}}', headers=headers)
    assert error_of(answer, 422)["details"][0]["field"] == "text"
    for route, body in (
        ("rtc/offer", f'{{"sdp": "v=0 {escaped}", "type": "offer"}}'),
        ("rtc/ice-candidate", f'{{"candidate": "{escaped}"}}'),
    ):
        assert error_of(api.post(f"/{sid}/{route}", content=body, headers=headers), 422)
    # Nothing was stored, and the connection is still good (a 500 would have closed it).
    assert len(api.get(f"/{sid}/transcript", headers=headers).json()["turns"]) == 1


@pytest.mark.parametrize(
    "text", ["\u200b", "\ufeff", "\u200b\u200c\u200d\u2060", " \u00ad\t\u3000 ", "\u2028\u2029"]
)
def test_an_answer_that_shows_nothing_is_refused(api: httpx.Client, text: str):
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    error = error_of(api.post(f"/{sid}/transcript", json={"text": text}, headers=headers), 422)
    assert error["code"] == "invalid_answer" and "visible" in error["message"]
    assert len(api.get(f"/{sid}/transcript", headers=headers).json()["turns"]) == 1
    # Visible text among them is an answer, stored as sent.
    answer = api.post(f"/{sid}/transcript", json={"text": f"{text}ok{text}"}, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["candidate_turn"]["text"] == f"{text}ok{text}".strip()


def test_a_405_allows_every_method_of_its_path(api: httpx.Client):
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    for method, path, allowed in (
        ("OPTIONS", f"/{sid}/transcript", {"GET", "POST"}),
        ("PUT", f"/{sid}/transcript", {"GET", "POST"}),
        ("PATCH", f"/{sid}/end", {"POST"}),
        ("DELETE", "/start", {"POST"}),
        ("POST", "/plans", {"GET"}),
        # A session's own path is any word but the fixed routes': DELETE /health is not one.
        ("DELETE", "/health", {"GET"}),
        ("OPTIONS", f"/{sid}", {"DELETE"}),
    ):
        response = api.request(method, path, headers=headers)
        assert error_of(response, 405)["code"] == "method_not_allowed"
        listed = {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"}
        assert listed == allowed, (method, path, response.headers["allow"])


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "9223372036854775808", "99" * 20])
def test_a_last_event_id_that_is_no_event_id_is_a_422(api: httpx.Client, value: str):
    session = start(api)
    response = api.get(
        f"/{session['session_id']}/events",
        headers={**auth(session["token"]), "Last-Event-ID": value},
    )
    assert error_of(response, 422)["details"][0]["field"] == "header.Last-Event-ID"


def test_bodies_of_the_wrong_kind_are_4xx(api: httpx.Client):
    for content, headers, status in (
        (b'{"user_id": "u"', JSON, 400),  # malformed JSON
        (b'{"user_id": "\xff\xfe"}', JSON, 400),  # not UTF-8
        (b'{"user_id": "u"}', {"Content-Type": "text/plain"}, 422),
        (b'{"user_id": "u"}', {}, 422),
        (b"[1]", JSON, 422),
        (b'{"user_id": "' + b"a" * 70_000 + b'"}', JSON, 413),
    ):
        response = api.post("/start", content=content, headers=headers)
        error_of(response, status)
