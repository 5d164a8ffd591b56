"""The Gradio demo UI: pick a plan, start an interview, talk or type, end it, read the results.

Built from the app's Runtime, so everything goes through the same InterviewService (a session
started here is an ordinary session, visible in the API with its transcript and results) and
the same VoiceGateway (the microphone runs the REST path's voice pipeline). Nothing here renders
with assets from the internet: the theme uses the system's fonts.

Only gradio's public API is used here; the microphone (fastrtc's component) and serving the page
are ui/gradio_host.py's.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import structlog
from sqlalchemy.exc import SQLAlchemyError

from interview.access import SessionNotFound
from interview.domain import OPEN_STATUSES, Interruption, Role
from interview.events import (
    CandidateChanged,
    CandidateState,
    ConnectionChanged,
    Event,
    InterviewerSpeaking,
    SpeakingState,
    TurnCommitted,
)
from interview.report import Report
from interview.report.render import render
from interview.report.writer import InterviewRunning, ResultsNotReady
from interview.runtime import Runtime
from interview.sessions import (
    IDEMPOTENCY_KEY_PATTERN,
    IdempotencyKeyReused,
    InvalidAnswer,
    ReplyPending,
    SessionClosed,
)
from interview.speech.errors import UnknownVoice
from interview.store import SessionRow, TurnRow
from interview.store.locks import SessionBusy
from ui.gradio_host import voice_component
from ui.voice_signaling import GatewaySignaling

log = structlog.get_logger(__name__)

USER_ID = "gradio-demo"
# Pages remembered at once (one entry per open browser tab); the oldest are forgotten first.
MAX_PAGES = 1000
REFRESH_SECONDS = 1.0
# An answer's Idempotency-Key as the service takes it: 1-255 printable ASCII, no spaces.
ANSWER_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
# The page's key for the answer being typed: a new one whenever the candidate edits it (in the
# browser, no round trip), so a double submit or a resend after an error carries the same key
# and the answer is stored once. crypto.randomUUID needs a secure context; else a v4 UUID from
# getRandomValues.
NEW_ANSWER_KEY_JS = """
() => {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
"""

SYSTEM_FONTS = [
    "system-ui",
    "-apple-system",
    "Segoe UI",
    "Roboto",
    "Helvetica Neue",
    "Arial",
    "sans-serif",
]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]


@dataclass
class PageInterview:
    session_id: str
    token: str
    voice_note: str | None = None
    # The session's newest event when the page last looked: nothing new, nothing to fetch.
    seen_event: int | None = None
    # The interviewer's current line is still being synthesized (not an event: keep looking).
    preparing_voice: bool = False
    voice_line: int | None = None
    voice_pieces: list[asyncio.Future[Any]] = field(default_factory=list)


@dataclass
class PageView:
    """What one refresh of the page shows."""

    status: str
    transcript: list[dict[str, str]]
    results: str
    session: str = ""


@dataclass
class DemoUI:
    """The page's behaviour, apart from its widgets: one interview per page (Gradio session
    hash), kept in memory; the interview itself lives in the service like any other."""

    runtime: Runtime
    pages: OrderedDict[str, PageInterview] = field(default_factory=OrderedDict)

    # For the microphone's signaling (ui.voice_signaling.PageSessions)

    def session_id_for(self, session_hash: str) -> str | None:
        page = self.pages.get(session_hash)
        return page.session_id if page else None

    def note_voice(self, session_hash: str, message: str | None) -> None:
        page = self.pages.get(session_hash)
        if page is not None:
            page.voice_note = message
            page.seen_event = None  # show it at the next refresh

    # Actions

    def voice_for_plan(self, plan_id: str) -> str:
        """The voice the interviewer speaks with unless another is picked: the plan's, else
        TTS_VOICE."""
        return self.runtime.plans.get(plan_id).voice or self.runtime.settings.tts_voice

    def voice_choices(self) -> list[str]:
        """The voices to pick from: the loaded speech engine's; without one (voice off), the
        plans' voices and TTS_VOICE, so a session started here may still name one."""
        known = self.runtime.speech.voices()
        if known is not None:
            return known
        defaults = {self.voice_for_plan(p.id) for p in self.runtime.plans.all()}
        return sorted({*defaults, self.runtime.settings.tts_voice})

    async def start(self, page_key: str, plan_id: str, voice: str | None = None) -> PageView:
        if self.runtime.draining:
            raise gr.Error("This server is shutting down; start the interview on another one.")
        previous = self.pages.pop(page_key, None)
        if previous is not None:
            # A page has one interview: the previous one's voice connection is let go.
            await self.runtime.voice.close(previous.session_id)
        try:
            started = await self.runtime.service.start(
                user_id=USER_ID, plan_id=plan_id, metadata={"client": "gradio-ui"}, voice=voice
            )
        except UnknownVoice as exc:
            raise gr.Error(f"The voice {exc.voice!r} is not one this server has.") from exc
        self.pages[page_key] = PageInterview(started.session.id, started.token)
        while len(self.pages) > MAX_PAGES:
            self.pages.popitem(last=False)
        log.info("ui_session_started", session_id=started.session.id, plan_id=plan_id, voice=voice)
        view = await self.view(page_key)
        assert view is not None
        return view

    async def answer(self, page_key: str, text: str, key: str = "") -> PageView:
        """`key`: the page's Idempotency-Key for this answer ("" without one): the same key
        again (a double submit, a resend after an error) returns the stored outcome."""
        if key and not ANSWER_KEY.fullmatch(key):
            raise gr.Error("That answer was not taken: its key is not 1-255 printable characters.")
        row = await self._session(page_key)
        try:
            await self.runtime.service.answer(row, text, idempotency_key=key or None)
        except InvalidAnswer as exc:
            raise gr.Error(f"That answer was not taken: {exc}.") from exc
        except SessionClosed as exc:
            raise gr.Error("This interview has ended; start a new one.") from exc
        except IdempotencyKeyReused as exc:
            raise gr.Error("That answer was not taken: edit it and send it again.") from exc
        except ReplyPending as exc:
            raise gr.Error(
                "Your answer is saved; the interviewer's reply is not yet. Press Send again in "
                "a moment."
            ) from exc
        except (SQLAlchemyError, SessionBusy) as exc:
            # The answer may be stored; its key makes sending it again safe.
            log.warning("ui_answer_database_error", error=type(exc).__name__)
            raise gr.Error(
                "The interview database did not answer. Press Send again in a moment: your "
                "answer will not be stored twice."
            ) from exc
        view = await self.view(page_key)
        assert view is not None
        return view

    async def end(self, page_key: str) -> PageView:
        row = await self._session(page_key)
        await self.runtime.service.end(row)  # its voice connection is hung up (voice/hangup.py)
        view = await self.view(page_key)
        assert view is not None
        return view

    async def refresh(self, page_key: str) -> PageView | None:
        """The page's new view, or None when nothing changed since the last one."""
        page = self.pages.get(page_key)
        if page is None:
            return None
        history = await self.runtime.events.history(page.session_id)
        newest = history[-1].id if history else None
        # Every change (a turn, the status, the results being ready) is an event of the session.
        if newest is not None and newest == page.seen_event and not page.preparing_voice:
            return None
        return await self.view(page_key)

    async def view(self, page_key: str) -> PageView | None:
        page = self.pages.get(page_key)
        if page is None:
            return None
        history = await self.runtime.events.history(page.session_id)
        page.seen_event = history[-1].id if history else None
        row = await self._session(page_key)
        turns = await self.runtime.service.transcript(row)
        transcript = [transcript_message(t) for t in turns]
        results = ""
        if row.status not in OPEN_STATUSES:
            results = await self._results(row)
        speaks_with = self.runtime.service.voice_for(row) or self.runtime.settings.tts_voice
        return PageView(
            status=await self._status(row, page, history),
            transcript=transcript,
            results=results,
            session=(
                f"Session `{row.id}` (plan `{row.plan_id}`, "
                f"voice `{speaks_with}`, "
                f"user `{row.user_id}`). "
                f"Its API token: `{page.token}`"
            ),
        )

    # internals

    async def _session(self, page_key: str) -> SessionRow:
        page = self.pages.get(page_key)
        if page is None:
            raise gr.Error("Start an interview first.")
        try:
            return await self.runtime.access.authenticate(page.session_id, page.token)
        except SessionNotFound as exc:
            raise gr.Error("This interview is gone; start a new one.") from exc

    async def _results(self, row: SessionRow) -> str:
        try:
            outcome = await self.runtime.reports.results(row)
        except InterviewRunning:
            return ""
        if isinstance(outcome, Report):
            return render(outcome, "md")
        if isinstance(outcome, ResultsNotReady) and outcome.status == "failed":
            return f"**The results could not be computed:** {outcome.reason}"
        return "_Computing the results…_"

    async def _line_ready(self, row: SessionRow, page: PageInterview) -> bool:
        """Whether the interviewer's current line is synthesized, so it plays at once when the
        candidate connects. Asking starts its synthesis (the gateway would start it only at
        the offer, and on a busy machine that is seconds of silence after pressing Talk)."""
        line = await self.runtime.service.current_line(row.id)
        if self.runtime.voice.state != "ready" or line is None:
            return True
        if page.voice_line != line.index:
            voice = self.runtime.service.voice_for(row)
            page.voice_line = line.index
            sentences = self.runtime.speech.cache.sentences(line.text, voice)
            page.voice_pieces = [piece for _, piece in sentences]
        done = [piece for piece in page.voice_pieces if piece.done()]
        for piece in done:
            # A failed synthesis is retried by the gateway at the offer; marking its exception
            # as seen keeps asyncio from logging it again when the future is dropped.
            if not piece.cancelled():
                piece.exception()
        return len(done) == len(page.voice_pieces)

    async def _status(self, row: SessionRow, page: PageInterview, history: list[Event]) -> str:
        voice = self.runtime.voice
        page.preparing_voice = False
        if row.status in OPEN_STATUSES:
            state = f"**Interview {row.status}**"
            if voice.state == "ready":
                state += f" · voice {row.connection_state}"
                activity = spoken_activity(history)
                if activity:
                    state += f" · {activity}"
                elif row.connection_state in ("none", "disconnected"):
                    if await self._line_ready(row, page):
                        state += " · ready: press **Talk** to answer aloud"
                    else:
                        page.preparing_voice = True
                        state += " · preparing the interviewer's voice…"
            else:
                state += " · voice is off: type your answers"
        else:
            reason = f" ({row.end_reason})" if row.end_reason else ""
            state = f"**Interview {row.status}{reason}**"
        if page.voice_note:
            state += f"\n\n⚠ {page.voice_note}"
        return state


# What the transcript adds after a line that was not heard whole.
INTERRUPTION_MARKS = {
    Interruption.barge_in: "*(interrupted)*",
    Interruption.withdrawn: "*(withdrawn)*",
}
# Gradio's Chatbot renders Markdown: a turn's own words are shown as words.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~\[\]<>#|])")


def transcript_message(turn: TurnRow) -> dict[str, str]:
    """One turn as a Chatbot message. A line the candidate cut shows the words played, "…" and
    "(interrupted)"; a withdrawn one is struck through with "(withdrawn)": kept, not said. A
    check-in is an ordinary interviewer line. The store holds one row per index, so a line
    updated after it was cut replaces what the page showed at the next refresh."""
    role = "assistant" if turn.role == Role.interviewer else "user"
    if turn.interruption is None:
        return {"role": role, "content": turn.text}
    words = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(turn.text.split()))
    if turn.interruption == Interruption.barge_in:
        # A line cut mid-sentence trails off; one cut before a word was played shows none.
        shown = words.rstrip(" ,;:.…—-") + "…"
    else:
        shown = f"~~{words}~~" if words else ""
    return {"role": role, "content": f"{shown} {INTERRUPTION_MARKS[turn.interruption]}".strip()}


def spoken_activity(history: list[Event]) -> str:
    """The latest spoken activity: who is speaking, or whether the answer is being transcribed."""
    for event in reversed(history):
        body = event.body
        if isinstance(body, CandidateChanged):
            return {
                CandidateState.speaking: "you are speaking",
                CandidateState.transcribing: "transcribing your answer",
                CandidateState.nothing_heard: "nothing heard: please answer again",
            }[body.state]
        if isinstance(body, InterviewerSpeaking):
            return _SPEAKING_ACTIVITY.get(body.state, "")
        if isinstance(body, TurnCommitted | ConnectionChanged):
            return ""
    return ""


_SPEAKING_ACTIVITY = {
    SpeakingState.started: "the interviewer is speaking",
    SpeakingState.resumed: "the interviewer is speaking",  # it was only an "mm-hm": it goes on
    SpeakingState.paused: "the interviewer paused: you are speaking",
    SpeakingState.interrupted: "the interviewer stopped: you have the floor",
    # "queued": the whole line is on its way to the browser; the answer comes next.
    SpeakingState.queued: "",
}


def theme() -> gr.themes.Base:
    # The default themes load web fonts from the internet; these are the machine's own.
    return gr.themes.Base(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


CSS = """
#status p { margin: 0.25em 0; }
#results { min-height: 2em; }
"""


def build_blocks(runtime: Runtime) -> tuple[gr.Blocks, DemoUI]:
    ui = DemoUI(runtime)
    plans = runtime.plans.all()
    default_plan = runtime.settings.default_plan_id
    voice_on = runtime.voice.state == "ready"

    def plan_voice(plan_id: str) -> gr.Dropdown:
        # A new plan brings its own voice; the list to pick from stays the same.
        return gr.Dropdown(value=ui.voice_for_plan(plan_id))

    def outputs_of(view: PageView | None) -> tuple[Any, ...]:
        if view is None:
            return (gr.skip(),) * 4
        return view.status, view.transcript, view.results, view.session

    async def on_start(plan_id: str, voice: str | None, request: gr.Request) -> tuple[Any, ...]:
        return outputs_of(await ui.start(request.session_hash or "", plan_id, voice or None))

    async def on_answer(text: str, key: str, request: gr.Request) -> tuple[Any, ...]:
        view = await ui.answer(request.session_hash or "", text, key)
        return ("", *outputs_of(view))

    async def on_end(request: gr.Request) -> tuple[Any, ...]:
        return outputs_of(await ui.end(request.session_hash or ""))

    async def on_tick(request: gr.Request) -> tuple[Any, ...]:
        return outputs_of(await ui.refresh(request.session_hash or ""))

    with gr.Blocks(
        title="Spool Interview: demo",
        theme=theme(),
        css=CSS,
        analytics_enabled=False,
        fill_width=True,
    ) as blocks:
        gr.Markdown(
            "# Spool Interview: demo\n"
            "Pick a plan and the interviewer's voice, start the interview, then talk through your "
            "microphone or type your answers. Sessions started here are ordinary interview "
            f"sessions (user `{USER_ID}`): the API shows their transcript and results."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                plan = gr.Dropdown(
                    choices=[(f"{p.title} ({p.id})", p.id) for p in plans],
                    value=default_plan,
                    label="Interview plan",
                    elem_id="plan",
                )
                voice = gr.Dropdown(
                    choices=ui.voice_choices(),
                    value=ui.voice_for_plan(default_plan),
                    label="Interviewer voice",
                    info="Starts as the plan's voice (or TTS_VOICE when it names none); the "
                    "one picked is this interview's.",
                    interactive=True,
                    elem_id="voice",
                )
                start = gr.Button("Start interview", variant="primary", elem_id="start")
                if voice_on:
                    voice_component(
                        GatewaySignaling(runtime.voice, runtime.service, ui),
                        label="Talk (press the button, allow the microphone, answer aloud)",
                        elem_id="mic",
                        button_labels={"start": "Talk", "stop": "Stop", "waiting": "Connecting"},
                    )
                else:
                    gr.Markdown(
                        f"**Voice is off on this server** ({runtime.voice.state}: "
                        f"{runtime.voice.detail}). Type your answers instead.",
                        elem_id="voice-off",
                    )
                end = gr.Button("End interview", variant="stop", elem_id="end")
                with gr.Accordion("Use this session from the API", open=False):
                    session = gr.Markdown(elem_id="session")
            with gr.Column(scale=2, min_width=360):
                status = gr.Markdown("Start an interview to begin.", elem_id="status")
                transcript = gr.Chatbot(
                    type="messages",
                    label="Transcript",
                    elem_id="transcript",
                    height=420,
                    show_copy_button=False,
                )
                with gr.Row(equal_height=True):
                    answer = gr.Textbox(
                        label="Type an answer",
                        placeholder="Type your answer and press Enter",
                        lines=1,
                        scale=4,
                        elem_id="answer",
                    )
                    send = gr.Button("Send", scale=1, elem_id="send")
                    answer_key = gr.Textbox(visible=False, elem_id="answer-key")
                results = gr.Markdown(elem_id="results")
        timer = gr.Timer(REFRESH_SECONDS)

        view_outputs = [status, transcript, results, session]
        plan.change(plan_voice, inputs=plan, outputs=voice, api_name=False)
        start.click(on_start, inputs=[plan, voice], outputs=view_outputs, api_name="start")
        # Each edit of the answer makes its key (in the browser); Send and Enter both send it.
        answer.input(None, outputs=answer_key, js=NEW_ANSWER_KEY_JS, api_name=False)
        answer_inputs = [answer, answer_key]
        answer_outputs = [answer, *view_outputs]
        send.click(on_answer, inputs=answer_inputs, outputs=answer_outputs, api_name="answer")
        answer.submit(on_answer, inputs=answer_inputs, outputs=answer_outputs, api_name=False)
        end.click(on_end, outputs=view_outputs, api_name="end")
        timer.tick(on_tick, outputs=view_outputs, api_name="refresh", show_progress="hidden")
    # Every page ticks its timer: several pages at once must not queue behind one another.
    blocks.queue(default_concurrency_limit=None)
    return blocks, ui
