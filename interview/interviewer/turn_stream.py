"""Follow a streamed `next_turn` tool call: the decision first, then the line as it grows.

The arguments arrive as JSON fragments. jiter's partial mode reads the incomplete object; once
`action` is complete and allowed, the `say` text is handed on piece by piece, so speech can
start on the first sentence while the model is still writing the rest. Nothing is handed on
before the decision is known to be valid: a bad decision can then still be retried unheard.
"""

from __future__ import annotations

import json
import re

from jiter import from_json

from interview.interviewer.base import LINE_COMPLETE, TextSink
from interview.interviewer.prompts import MAX_SAY_CHARS, TurnAction

_MARKDOWN = re.compile(r"[*_#`~]")
_SPACE = re.compile(r"\s+")


class MalformedTurn(ValueError):
    """The model's tool call is not a valid decision for this turn."""


def spoken(text: str) -> str:
    """Markdown marks dropped and whitespace collapsed.

    Both are local to a character or a run of spaces, so the cleaned text of a prefix is a
    prefix of the cleaned text: what was already spoken stays true as the line grows.
    """
    return _SPACE.sub(" ", _MARKDOWN.sub("", text)).lstrip()


class TurnStream:
    def __init__(self, allowed: list[TurnAction], on_text: TextSink | None) -> None:
        self.allowed = allowed
        self.on_text = on_text
        self.arguments = ""
        self.action: TurnAction | None = None
        self.emitted = ""
        self.said_all = False

    def feed(self, piece: str) -> None:
        self.arguments += piece
        try:
            partial = from_json(self.arguments.encode(), partial_mode="trailing-strings")
        except ValueError:
            return  # not yet readable (e.g. a half-written number); the next piece may fix it
        if not isinstance(partial, dict):
            raise MalformedTurn("the tool arguments are not an object")
        keys = list(partial)
        if self.action is None and "action" in partial and keys[-1] != "action":
            # A later key has started, so the action string is complete.
            self.action = self._valid_action(partial["action"])
        if self.action is not None and isinstance(partial.get("say"), str):
            self._emit(partial["say"])
            if not self.said_all and "say" in from_json(self.arguments.encode(), partial_mode="on"):
                # The string is closed (only complete strings survive this mode): the line's
                # words are all here though the call has not ended; its last sentence may go.
                self._complete()

    def finish(self) -> tuple[TurnAction, str]:
        """The decision and the whole line, once the call is complete; strict from here on."""
        try:
            arguments = json.loads(self.arguments)
        except json.JSONDecodeError as exc:
            raise MalformedTurn(f"the tool arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(arguments, dict):
            raise MalformedTurn("the tool arguments are not an object")
        action = self._valid_action(arguments.get("action"))
        if self.action is not None and action is not self.action:
            raise MalformedTurn("the action changed while streaming")
        say = arguments.get("say")
        if not isinstance(say, str):
            raise MalformedTurn("'say' is missing or not text")
        self.action = action
        self._emit(say)
        line = spoken(say).strip()[:MAX_SAY_CHARS].strip()
        if not line:
            raise MalformedTurn("'say' is empty")
        self._complete()
        return action, line

    def _complete(self) -> None:
        if self.said_all:
            return
        self.said_all = True
        if self.on_text is not None:
            self.on_text(LINE_COMPLETE)

    def _valid_action(self, value: object) -> TurnAction:
        allowed = [a.value for a in self.allowed]
        if value not in allowed:
            raise MalformedTurn(f"action {value!r} is not one of {allowed}")
        return TurnAction(value)

    def _emit(self, say: str) -> None:
        # Trailing spaces wait for the next word: the final line is stripped, and every
        # emitted piece must stay a prefix of it.
        text = spoken(say).rstrip()[:MAX_SAY_CHARS].rstrip()
        if len(text) > len(self.emitted) and text.startswith(self.emitted):
            piece, self.emitted = text[len(self.emitted) :], text
            if self.on_text is not None:
                self.on_text(piece)
