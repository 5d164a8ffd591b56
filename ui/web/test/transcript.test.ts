// Unit tests of src/transcript.ts: turns replaced by index (a cut line comes again with its
// interruption), how a cut or withdrawn line reads, and the speaking indicator's states.
// The page rendering them in a browser is covered by tests/e2e/test_interrupted_lines_ui.py.

import assert from "node:assert/strict";
import { test } from "node:test";

import type { Turn } from "../src/client";
import { InterviewerLine, mergeTurns, orderedTurns, turnView } from "../src/transcript";

const turn = (index: number, text: string, extra: Partial<Turn> = {}): Turn => ({
  index,
  role: index % 2 === 0 ? "interviewer" : "candidate",
  kind: index % 2 === 0 ? "question" : "answer",
  text,
  started_at: "2026-12-06T09:00:00Z",
  ended_at: "2026-12-06T09:00:05Z",
  source: "voice",
  question_index: 0,
  ...extra,
});

test("a turn published again for the same index replaces the one shown", () => {
  const whole = "Tell me about a project you are proud of, and what you would change.";
  let turns = mergeTurns(new Map(), [turn(0, "Hello."), turn(1, "Hi."), turn(2, whole)]);
  turns = mergeTurns(turns, [
    turn(2, "Tell me about a project", { interruption: "barge_in", planned_text: whole }),
  ]);
  const shown = orderedTurns(turns);
  assert.deepEqual(
    shown.map((t) => [t.index, t.text, t.interruption ?? null]),
    [
      [0, "Hello.", null],
      [1, "Hi.", null],
      [2, "Tell me about a project", "barge_in"],
    ],
  );
});

test("turns are shown in index order whatever order they arrive in", () => {
  const turns = mergeTurns(new Map(), [turn(2, "c"), turn(0, "a"), turn(1, "b")]);
  assert.deepEqual(orderedTurns(turns).map((t) => t.text), ["a", "b", "c"]);
});

test("a line heard whole reads as it is, without a marker", () => {
  assert.deepEqual(turnView(turn(0, "Hello there.")), {
    text: "Hello there.",
    marker: null,
    description: null,
    interruption: null,
  });
  assert.equal(turnView(turn(0, "Hello.", { interruption: null })).marker, null);
  // A check-in is an ordinary interviewer line.
  const checkIn = turn(4, "Take your time; tell me when you're ready.", { kind: "check_in" });
  assert.equal(turnView(checkIn).text, "Take your time; tell me when you're ready.");
  assert.equal(turnView(checkIn).marker, null);
});

test("a line cut by the candidate shows what was played, trailing off, marked interrupted", () => {
  const cut = turn(2, "Tell me about a project you are, ", {
    interruption: "barge_in",
    planned_text: "Tell me about a project you are proud of.",
  });
  const view = turnView(cut);
  assert.equal(view.text, "Tell me about a project you are…");
  assert.equal(view.marker, "(interrupted)");
  assert.equal(view.interruption, "barge_in");
  assert.match(view.description ?? "", /spoke over the interviewer/);
  // Cut before a word was played: only the trailing off is left.
  assert.equal(turnView(turn(2, "", { interruption: "barge_in" })).text, "…");
});

test("a withdrawn line keeps its words and is marked withdrawn", () => {
  const view = turnView(turn(2, "How do you debug a failing service?", { interruption: "withdrawn" }));
  assert.equal(view.text, "How do you debug a failing service?");
  assert.equal(view.marker, "(withdrawn)");
  assert.equal(view.interruption, "withdrawn");
});

test("speaking: started and resumed speak, paused and interrupted stop at once", () => {
  const line = new InterviewerLine();
  assert.deepEqual(line.on("started", undefined, 1000), { indicator: "on", offInMs: null });
  assert.deepEqual(line.on("paused", undefined, 2000), { indicator: "off", offInMs: null });
  assert.deepEqual(line.on("resumed", undefined, 2500), { indicator: "on", offInMs: null });
  assert.deepEqual(line.on("interrupted", undefined, 3000), { indicator: "off", offInMs: null });
  // Nothing more of that line is played: a late "queued" without its length changes nothing.
  assert.deepEqual(line.on("queued", undefined, 3100), { indicator: "keep", offInMs: null });
});

test("speaking: queued stops the indicator once the line has played", () => {
  const line = new InterviewerLine();
  line.on("started", undefined, 10_000);
  // 4 s of audio from 10 s: at 11 s, 3 s are left.
  assert.deepEqual(line.on("queued", 4, 11_000), { indicator: "keep", offInMs: 3000 });
  // Already played out by the time it is known: at once.
  const late = new InterviewerLine();
  late.on("started", undefined, 0);
  assert.deepEqual(late.on("queued", 1, 5000), { indicator: "keep", offInMs: 0 });
});

test("speaking: a line that held for a backchannel ends that much later", () => {
  const line = new InterviewerLine();
  line.on("started", undefined, 0);
  assert.deepEqual(line.on("queued", 4, 1000), { indicator: "keep", offInMs: 3000 });
  // Held from 2 s to 3.5 s: the timer is off while it holds ...
  assert.deepEqual(line.on("paused", undefined, 2000), { indicator: "off", offInMs: null });
  // ... and on resuming 2 s of audio are left (4 s + 1.5 s held, from 0, at 3.5 s).
  assert.deepEqual(line.on("resumed", undefined, 3500), { indicator: "on", offInMs: 2000 });
  // Queued while held: no timer until it resumes.
  const held = new InterviewerLine();
  held.on("started", undefined, 0);
  held.on("paused", undefined, 1000);
  assert.deepEqual(held.on("queued", 3, 1200), { indicator: "keep", offInMs: null });
  assert.deepEqual(held.on("resumed", undefined, 2000), { indicator: "on", offInMs: 2000 });
});

test("speaking: a new line starts the clock over", () => {
  const line = new InterviewerLine();
  line.on("started", undefined, 0);
  line.on("paused", undefined, 1000);
  line.on("interrupted", undefined, 1500);
  assert.deepEqual(line.on("started", undefined, 9000), { indicator: "on", offInMs: null });
  assert.deepEqual(line.on("queued", 2, 9000), { indicator: "keep", offInMs: 2000 });
});
