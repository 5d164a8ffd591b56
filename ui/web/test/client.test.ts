// Unit tests of src/client.ts under Node's own test runner, with a fake server (fetch) and fake
// browser WebRTC objects. What they pin down is the client's own logic: the order of the
// set-up (data channel before the offer), trickle ICE held until the answer, the typed
// errors, reconnecting with a new offer, and the SSE stream resumed with Last-Event-ID.
// The real browser path is covered end to end by tests/e2e/test_web_demo.py.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import {
  InterviewError,
  InterviewSession,
  defaultCredentials,
  newIdempotencyKey,
  type AnswerRetryOptions,
  type InterviewEvent,
  type SessionEvent,
} from "../src/client";
import { mergeTurns, orderedTurns, turnView } from "../src/transcript";

// -- a fake server ------------------------------------------------------------------------

interface Call {
  method: string;
  path: string;
  headers: Headers;
  body: unknown;
  credentials: RequestCredentials | undefined;
}

type Route = (call: Call) => Response | Promise<Response>;

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });

const apiError = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  json(status, { error: { code, message, details: [] } }, headers);

/** One Server-Sent Event as the API sends it: named after the event's `type`, the event as data. */
const sse = (event: SessionEvent, fields: { id?: number; retry?: number } = {}): string =>
  (fields.retry === undefined ? "" : `retry: ${fields.retry}\n`) +
  (fields.id === undefined ? "" : `id: ${fields.id}\n`) +
  `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

const speakingStarted: SessionEvent = {
  type: "speaking",
  role: "interviewer",
  state: "started",
  index: 0,
  seconds: null,
  latency_ms: null,
};

class FakeServer {
  calls: Call[] = [];
  routes = new Map<string, Route>();

  on(method: string, path: string, route: Route): this {
    this.routes.set(`${method} ${path}`, route);
    return this;
  }

  fetch: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    const path = url.pathname.replace(/^\/api\/interview\/s1/, "") + url.search;
    const method = init?.method ?? "GET";
    const call: Call = {
      method,
      path,
      headers: new Headers(init?.headers),
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
      credentials: init?.credentials,
    };
    this.calls.push(call);
    const route = this.routes.get(`${method} ${path}`);
    if (route === undefined) return apiError(404, "not_found", `no route ${method} ${path}`);
    return route(call);
  };

  count(method: string, path: string): number {
    return this.calls.filter((c) => c.method === method && c.path === path).length;
  }
}

// -- fake browser WebRTC ------------------------------------------------------------------

class FakeTrack {
  enabled = true;
  stopped = false;
  stop(): void {
    this.stopped = true;
  }
}

class FakeStream {
  readonly track = new FakeTrack();
  getAudioTracks(): FakeTrack[] {
    return [this.track];
  }
  getTracks(): FakeTrack[] {
    return [this.track];
  }
}

class FakePeer {
  static instances: FakePeer[] = [];
  readonly config: RTCConfiguration;
  readonly steps: string[] = [];
  connectionState: RTCPeerConnectionState = "new";
  localDescription: RTCSessionDescriptionInit | null = null;
  remoteDescription: RTCSessionDescriptionInit | null = null;
  onicecandidate: ((event: { candidate: { toJSON(): RTCIceCandidateInit } | null }) => void) | null = null;
  onconnectionstatechange: (() => void) | null = null;
  ontrack: ((event: unknown) => void) | null = null;

  constructor(config: RTCConfiguration) {
    this.config = config;
    FakePeer.instances.push(this);
  }
  createDataChannel(label: string): object {
    this.steps.push(`channel:${label}`);
    return {};
  }
  addTrack(): object {
    this.steps.push("track");
    return {};
  }
  async createOffer(): Promise<RTCSessionDescriptionInit> {
    this.steps.push("offer");
    return { type: "offer", sdp: `v=0 offer ${FakePeer.instances.length}` };
  }
  async setLocalDescription(description: RTCSessionDescriptionInit): Promise<void> {
    this.localDescription = description;
    // Gathering starts now: these candidates come before the server has answered.
    for (const n of [1, 2]) {
      const init = { candidate: `candidate:${n} 1 udp 1 127.0.0.1 500${n} typ host`, sdpMid: "0", sdpMLineIndex: 0 };
      this.onicecandidate?.({ candidate: { toJSON: () => init } });
    }
    this.onicecandidate?.({ candidate: null });
  }
  async setRemoteDescription(description: RTCSessionDescriptionInit): Promise<void> {
    this.remoteDescription = description;
  }
  close(): void {
    this.connectionState = "closed";
  }
  setState(state: RTCPeerConnectionState): void {
    this.connectionState = state;
    this.onconnectionstatechange?.();
  }
}

let microphone: FakeStream;
let getUserMedia: () => Promise<FakeStream>;

beforeEach(() => {
  FakePeer.instances = [];
  microphone = new FakeStream();
  getUserMedia = async () => microphone;
  Object.defineProperty(globalThis, "RTCPeerConnection", { value: FakePeer, configurable: true });
  Object.defineProperty(globalThis, "navigator", {
    value: { mediaDevices: { getUserMedia: () => getUserMedia() } },
    configurable: true,
  });
});

let sessions: InterviewSession[] = [];
afterEach(() => {
  for (const session of sessions) session.close();
  sessions = [];
});

function voiceServer(): FakeServer {
  return new FakeServer()
    .on("GET", "/ice-servers", () => json(200, { iceServers: [{ urls: ["turn:127.0.0.1:3478"], username: "u", credential: "c" }], ttl: 600 }))
    .on("POST", "/rtc/offer", () => json(200, { type: "answer", sdp: "v=0 answer" }))
    .on("POST", "/rtc/ice-candidate", () => json(200, { status: "added" }))
    .on("GET", "/status", () => json(200, { status: "active" }));
}

function sessionOn(
  server: FakeServer,
  answerRetry: AnswerRetryOptions = {},
): { session: InterviewSession; events: InterviewEvent[] } {
  const session = new InterviewSession(
    "http://api.test/api/interview",
    { sessionId: "s1", token: "tok" },
    { fetch: server.fetch, answerRetry },
  );
  sessions.push(session);
  const events: InterviewEvent[] = [];
  session.subscribe((event) => events.push(event));
  return { session, events };
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function rejection(promise: Promise<unknown>): Promise<InterviewError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof InterviewError, `not an InterviewError: ${String(error)}`);
    return error;
  }
  assert.fail("expected a rejection");
}

// -- tests --------------------------------------------------------------------------------

test("the data channel and the microphone are on the offer, with the API's ICE servers", async () => {
  const server = voiceServer();
  const { session } = sessionOn(server);
  await session.connectVoice({ iceTransportPolicy: "relay" });
  const pc = FakePeer.instances[0];
  assert.ok(pc);
  assert.deepEqual(pc.steps, ["channel:text", "track", "offer"]);
  assert.equal(pc.config.iceTransportPolicy, "relay");
  assert.deepEqual(pc.config.iceServers, [{ urls: ["turn:127.0.0.1:3478"], username: "u", credential: "c" }]);
  const offer = server.calls.find((c) => c.path === "/rtc/offer");
  assert.deepEqual(offer?.body, { sdp: "v=0 offer 1", type: "offer" });
  assert.equal(offer?.headers.get("Authorization"), "Bearer tok");
  assert.deepEqual(pc.remoteDescription, { type: "answer", sdp: "v=0 answer" });
});

test("candidates found before the answer are sent after it, in order, then the end marker", async () => {
  const server = voiceServer();
  const { session } = sessionOn(server);
  await session.connectVoice();
  await until("three candidate posts", () => server.count("POST", "/rtc/ice-candidate") === 3);
  const offerAt = server.calls.findIndex((c) => c.path === "/rtc/offer");
  const posts = server.calls.map((c, i) => ({ ...c, i })).filter((c) => c.path === "/rtc/ice-candidate");
  assert.ok(posts.every((c) => c.i > offerAt), "a candidate went out before the offer was answered");
  assert.deepEqual(
    posts.map((c) => (c.body as { candidate: string }).candidate),
    ["candidate:1 1 udp 1 127.0.0.1 5001 typ host", "candidate:2 1 udp 1 127.0.0.1 5002 typ host", ""],
  );
});

test("a denied microphone is microphone_denied, and no offer is made", async () => {
  getUserMedia = async () => {
    throw new DOMException("Permission denied", "NotAllowedError");
  };
  const server = voiceServer();
  const { session } = sessionOn(server);
  const error = await rejection(session.connectVoice());
  assert.equal(error.kind, "microphone_denied");
  assert.equal(server.count("POST", "/rtc/offer"), 0);
});

test("a full server is at_capacity with its Retry-After, and the microphone is released", async () => {
  const server = voiceServer().on("POST", "/rtc/offer", () =>
    apiError(503, "at_capacity", "The server is at capacity (2 voice interviews).", { "Retry-After": "10" }),
  );
  const { session } = sessionOn(server);
  const error = await rejection(session.connectVoice());
  assert.equal(error.kind, "at_capacity");
  assert.equal(error.retryAfterSeconds, 10);
  assert.equal(error.status, 503);
  assert.ok(microphone.track.stopped);
});

test("an expired session is session_expired, an ended one session_ended", async () => {
  const expired = voiceServer().on("GET", "/ice-servers", () => apiError(409, "session_expired", "The interview has expired."));
  assert.equal((await rejection(sessionOn(expired).session.connectVoice())).kind, "session_expired");
  // The code decides, not the message's wording.
  const reworded = voiceServer().on("POST", "/rtc/offer", () => apiError(409, "session_expired", "Time is up."));
  const timeUp = await rejection(sessionOn(reworded).session.connectVoice());
  assert.equal(timeUp.kind, "session_expired");
  assert.equal(timeUp.code, "session_expired");
  // A server from before the session_expired code said so only in the message.
  const older = voiceServer().on("GET", "/ice-servers", () => apiError(409, "session_closed", "The interview has expired."));
  assert.equal((await rejection(sessionOn(older).session.connectVoice())).kind, "session_expired");
  const gone = voiceServer().on("GET", "/ice-servers", () => apiError(410, "gone", "Gone."));
  assert.equal((await rejection(sessionOn(gone).session.connectVoice())).kind, "session_expired");
  const ended = voiceServer().on("POST", "/rtc/offer", () => apiError(409, "session_closed", "The interview has ended."));
  assert.equal((await rejection(sessionOn(ended).session.connectVoice())).kind, "session_ended");
});

test("a failed connection is re-offered on the same session", async () => {
  const server = voiceServer();
  const { session, events } = sessionOn(server);
  await session.connectVoice();
  FakePeer.instances[0]?.setState("connected");
  FakePeer.instances[0]?.setState("failed");
  await until("a second offer", () => server.count("POST", "/rtc/offer") === 2);
  assert.equal(FakePeer.instances.length, 2);
  assert.equal(FakePeer.instances[0]?.connectionState, "closed");
  assert.deepEqual(FakePeer.instances[1]?.steps, ["channel:text", "track", "offer"]);
  assert.ok(events.some((e) => e.type === "reconnecting" && e.attempt === 1));
  assert.ok(!microphone.track.stopped, "the microphone is kept for the new connection");
  assert.ok(!events.some((e) => e.type === "voice-error"));
});

test("a connection closed because the interview ended is not re-offered", async () => {
  const server = voiceServer().on("GET", "/status", () => json(200, { status: "ended" }));
  const { session, events } = sessionOn(server);
  await session.connectVoice();
  FakePeer.instances[0]?.setState("connected");
  FakePeer.instances[0]?.setState("closed");
  await until("the status check", () => server.count("GET", "/status") === 1);
  await until("the microphone released", () => microphone.track.stopped);
  assert.equal(server.count("POST", "/rtc/offer"), 1);
  assert.ok(!events.some((e) => e.type === "voice-error" || e.type === "reconnecting"));
});

test("when reconnecting keeps failing, the error is connection_lost", async () => {
  let offers = 0;
  const server = voiceServer().on("POST", "/rtc/offer", () =>
    ++offers === 1 ? json(200, { type: "answer", sdp: "v=0 answer" }) : apiError(503, "at_capacity", "Full.", { "Retry-After": "10" }),
  );
  const { session, events } = sessionOn(server);
  await session.connectVoice({ maxReconnectAttempts: 1, reconnectDelayMs: 10 });
  FakePeer.instances[0]?.setState("connected");
  FakePeer.instances[0]?.setState("failed");
  await until("the voice error", () => events.some((e) => e.type === "voice-error"));
  const event = events.find((e) => e.type === "voice-error");
  assert.ok(event?.type === "voice-error");
  assert.equal(event.error.kind, "connection_lost");
  assert.equal(server.count("POST", "/rtc/offer"), 2);
  assert.ok(microphone.track.stopped);
});

test("live events: parsed across chunks, resumed with Last-Event-ID, stopped after results", async () => {
  const encoder = new TextEncoder();
  const stream = (chunks: string[]) =>
    new Response(
      new ReadableStream({
        start(controller) {
          for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
          controller.close();
        },
      }),
      { status: 200, headers: { "Content-Type": "text/event-stream" } },
    );
  const turn = sse(
    {
      type: "turn",
      index: 0,
      role: "interviewer",
      kind: "question",
      text: "Hello.",
      source: "voice",
      question_index: 0,
      started_at: "2026-01-05T10:00:00Z",
      ended_at: "2026-01-05T10:00:02Z",
      interruption: null,
      planned_text: null,
      transcription: null,
    },
    { id: 7, retry: 5 },
  );
  const cut = turn.indexOf("urn\ndata"); // the first chunk ends inside "event: turn"
  const ended = sse({ type: "status", status: "ended", reason: "candidate" }, { id: 9 });
  const responses = [
    // The server ends each response after a while; the client resumes after `retry` ms.
    stream([`: ping\n\n${turn.slice(0, cut)}`, turn.slice(cut), sse(speakingStarted, { id: 8 })]),
    stream([ended.replace(/\n/g, "\r\n"), sse({ type: "results", status: "ready" }, { id: 10 })]),
  ];
  const server = new FakeServer().on("GET", "/events", () => responses.shift() ?? json(500, {}));
  const { session, events } = sessionOn(server);
  session.startEvents();
  await until("the results event", () => events.some((e) => e.type === "results"));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const requests = server.calls.filter((c) => c.path === "/events");
  assert.equal(requests.length, 2, "no request after the results event");
  assert.equal(requests[0]?.headers.get("Last-Event-ID"), null);
  assert.equal(requests[1]?.headers.get("Last-Event-ID"), "8");
  assert.equal(requests[0]?.headers.get("Authorization"), "Bearer tok");
  assert.deepEqual(
    events.map((e) => e.type),
    ["turn", "speaking", "status", "results"],
  );
  const first = events[0];
  assert.ok(first?.type === "turn" && first.turn.text === "Hello.");
  const status = events[2];
  assert.ok(status?.type === "status" && status.status === "ended" && status.reason === "candidate");
});

test("a line cut by the candidate: its turn comes again with the interruption, and the speaking states", async () => {
  const line = {
    type: "turn",
    index: 2,
    role: "interviewer",
    kind: "question",
    text: "Tell me about a project you are proud of.",
    source: "voice",
    question_index: 1,
    started_at: "2026-01-05T10:00:00Z",
    ended_at: "2026-01-05T10:00:04Z",
    interruption: null,
    planned_text: null,
    transcription: null,
  } as const;
  const speaking = (state: "started" | "paused" | "interrupted"): SessionEvent => ({
    ...speakingStarted,
    state,
  });
  // The turn event published again once the line was cut.
  const again = JSON.stringify({
    ...line,
    text: "Tell me about a project",
    interruption: "barge_in",
    planned_text: line.text,
  });
  const body =
    sse(speaking("started"), { id: 1 }) +
    sse(line, { id: 2 }) +
    sse(speaking("paused"), { id: 3 }) +
    sse(speaking("interrupted"), { id: 4 }) +
    `id: 5\nevent: turn\ndata: ${again}\n\n` +
    sse({ type: "results", status: "ready" }, { id: 6 });
  const server = new FakeServer().on(
    "GET",
    "/events",
    () => new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } }),
  );
  const { session, events } = sessionOn(server);
  session.startEvents();
  await until("the results event", () => events.some((e) => e.type === "results"));
  assert.deepEqual(
    events.map((e) => (e.type === "speaking" ? `speaking:${e.state}` : e.type)),
    ["speaking:started", "turn", "speaking:paused", "speaking:interrupted", "turn", "results"],
  );
  // Both turn events reach listeners (the client drops neither); the page keeps the last.
  const turns = events.flatMap((e) => (e.type === "turn" ? [e.turn] : []));
  const shown = orderedTurns(mergeTurns(new Map(), turns));
  assert.equal(shown.length, 1);
  assert.equal(shown[0]?.interruption, "barge_in");
  assert.equal(shown[0]?.planned_text, line.text);
  assert.equal(shown[0] && turnView(shown[0]).text, "Tell me about a project…");
});

test("a response that carried events is followed at once; an empty one waits for retry", async () => {
  // EVENTS_DELIVERY=poll: each response ends just after its first events, behind a proxy
  // that only forwards whole responses. Waiting `retry` (here 3 s) after each would delay
  // every event by that much.
  const encoder = new TextEncoder();
  const body = (text: string) =>
    new Response(encoder.encode(text), { status: 200, headers: { "Content-Type": "text/event-stream" } });
  const speaking = (id: number) => sse(speakingStarted, { id, retry: 3000 });
  const responses = [body(speaking(1)), body(speaking(2)), body("retry: 3000\n\n: idle\n\n")];
  const server = new FakeServer().on("GET", "/events", () => responses.shift() ?? body(": idle\n\n"));
  const { session, events } = sessionOn(server);
  const started = Date.now();
  session.startEvents();
  await until("three requests", () => server.count("GET", "/events") === 3, 2000);
  assert.ok(Date.now() - started < 1000, "each response with events is followed at once");
  assert.equal(events.filter((e) => e.type === "speaking").length, 2);
  const requests = server.calls.filter((c) => c.path === "/events");
  assert.equal(requests[2]?.headers.get("Last-Event-ID"), "2");
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(server.count("GET", "/events"), 3, "an empty response waits for retry");
  session.stopEvents();
});

test("results are polled until ready; a typed answer emits both turns", async () => {
  let polls = 0;
  const report = { status: "ready", session_id: "s1", evaluation: null, evaluation_note: "Metrics only." };
  const server = new FakeServer()
    .on("GET", "/results", () => (++polls < 3 ? json(202, { status: "pending" }) : json(200, report)))
    .on("POST", "/transcript", (call) =>
      json(200, {
        candidate_turn: { index: 1, role: "candidate", text: (call.body as { text: string }).text },
        interviewer_turn: { index: 2, role: "interviewer", text: "Next?" },
        status: "active",
        interview_complete: false,
      }),
    );
  const { session, events } = sessionOn(server);
  const outcome = await session.waitForResults();
  assert.equal(outcome.status, "ready");
  assert.equal(polls, 3);
  await session.answer("I built a queue.");
  assert.deepEqual(
    events.filter((e) => e.type === "turn").map((e) => (e.type === "turn" ? e.turn.index : -1)),
    [1, 2],
  );
  const error = await rejection(
    new InterviewSession("http://api.test/api/interview", { sessionId: "s1", token: "tok" }, {
      fetch: new FakeServer().on("POST", "/transcript", () => apiError(409, "session_closed", "The interview has ended.")).fetch,
    }).answer("late"),
  );
  assert.equal(error.kind, "session_ended");
});

test("an evaluation retried in the background is polled until it is in", async () => {
  let polls = 0;
  const pending = { status: "ready", session_id: "s1", evaluation: null, evaluation_status: "pending_retry" };
  const evaluated = { ...pending, evaluation: { summary: "Solid." }, evaluation_status: "ready" };
  const server = new FakeServer().on("GET", "/results", () => json(200, ++polls < 3 ? pending : evaluated));
  const { session } = sessionOn(server);
  const outcome = await session.waitForEvaluation({ intervalMs: 5 });
  assert.equal(polls, 3);
  assert.equal(outcome.status === "failed" ? "failed" : outcome.evaluation_status, "ready");
  // Stopped from outside (the page went away): it rejects, and polls no more.
  const abort = new AbortController();
  const stopped = session.waitForEvaluation({ intervalMs: 60_000, signal: abort.signal });
  abort.abort();
  await assert.rejects(stopped);
  assert.equal(polls, 3);
});

test("erase deletes the session with its token; one already gone counts as erased", async () => {
  let deletes = 0;
  const server = new FakeServer().on("DELETE", "", (call) => {
    assert.equal(call.headers.get("Authorization"), "Bearer tok");
    return ++deletes === 1 ? new Response(null, { status: 204 }) : apiError(404, "session_not_found", "No.");
  });
  const { session } = sessionOn(server);
  await session.erase();
  await session.erase();
  assert.equal(deletes, 2);
  const failing = sessionOn(
    new FakeServer().on("DELETE", "", () => apiError(503, "database_unavailable", "Down.", { "Retry-After": "5" })),
  ).session;
  const error = await rejection(failing.erase());
  assert.equal(error.status, 503);
});

test("start sends the session options in the API's names, the voice among them", async () => {
  const server = new FakeServer().on("POST", "/api/interview/start", () =>
    json(201, { session_id: "s1", token: "tok", status: "created", plan_id: "p" }),
  );
  const { session, started } = await InterviewSession.start(
    "http://api.test/api/interview",
    { userId: "u", planId: "p", candidateName: "Ada", voice: "bf_emma" },
    { fetch: server.fetch },
  );
  sessions.push(session);
  assert.equal(started.session_id, "s1");
  assert.deepEqual(server.calls[0]?.body, {
    user_id: "u",
    plan_id: "p",
    candidate_name: "Ada",
    voice: "bf_emma",
  });
});

// -- giving up: failures counted across reconnect cycles ----------------------------------

const reconnectAttempts = (events: InterviewEvent[]): number[] =>
  events.flatMap((e) => (e.type === "reconnecting" ? [e.attempt] : []));

test("a first connection that never comes up ends in connection_lost, not Connecting… forever", async () => {
  // TURN blocked: every offer is answered, no connection ever reaches "connected".
  const server = voiceServer();
  const { session, events } = sessionOn(server);
  await session.connectVoice({ connectTimeoutSeconds: 0.05, maxReconnectAttempts: 3, reconnectDelayMs: 10 });
  await until("the voice error", () => events.some((e) => e.type === "voice-error"));
  const event = events.find((e) => e.type === "voice-error");
  assert.ok(event?.type === "voice-error");
  assert.equal(event.error.kind, "connection_lost");
  assert.match(event.error.message, /answer by typing/);
  // Three attempts in all: the first connection and two reconnects, each timed out.
  assert.equal(server.count("POST", "/rtc/offer"), 3);
  assert.deepEqual(reconnectAttempts(events), [2, 3]);
  assert.ok(microphone.track.stopped);
  assert.ok(FakePeer.instances.every((pc) => pc.connectionState === "closed"));
  // And it stays given up: no more offers.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(server.count("POST", "/rtc/offer"), 3);
});

test("failed attempts count across reconnect cycles, and only a real connection resets them", async () => {
  const server = voiceServer();
  const { session, events } = sessionOn(server);
  // A timeout long enough that the steps driven by hand below always come first, even when a
  // loaded machine delays this test by tens of milliseconds; reconnect 1 uses it up.
  await session.connectVoice({ connectTimeoutSeconds: 1, maxReconnectAttempts: 5, reconnectDelayMs: 10 });
  FakePeer.instances[0]?.setState("connected");
  FakePeer.instances[0]?.setState("failed");
  // Reconnect 1 is answered, then times out: that is failure 1, so the next is attempt 2.
  await until("the third offer", () => server.count("POST", "/rtc/offer") === 3);
  // Attempt 2's connection fails while connecting: failure 2.
  FakePeer.instances[2]?.setState("connecting");
  FakePeer.instances[2]?.setState("failed");
  await until("the fourth offer", () => server.count("POST", "/rtc/offer") === 4);
  assert.deepEqual(reconnectAttempts(events), [1, 2, 3]);
  // Attempt 3 comes up: the count starts over, and the next drop's reconnect is attempt 1.
  FakePeer.instances[3]?.setState("connected");
  FakePeer.instances[3]?.setState("failed");
  await until("the fifth offer", () => server.count("POST", "/rtc/offer") === 5);
  FakePeer.instances[4]?.setState("connected");
  assert.deepEqual(reconnectAttempts(events), [1, 2, 3, 1]);
  assert.ok(!events.some((e) => e.type === "voice-error"));
});

test("a reconnect waits as long as the server's Retry-After asks", async () => {
  let offers = 0;
  const server = voiceServer().on("POST", "/rtc/offer", () =>
    ++offers === 2
      ? apiError(503, "draining", "This server is shutting down; retry shortly.", { "Retry-After": "1" })
      : json(200, { type: "answer", sdp: "v=0 answer" }),
  );
  const { session, events } = sessionOn(server);
  await session.connectVoice({ reconnectDelayMs: 10 });
  FakePeer.instances[0]?.setState("connected");
  FakePeer.instances[0]?.setState("failed");
  await until("the second reconnect", () => reconnectAttempts(events).length === 2);
  const delays = events.flatMap((e) => (e.type === "reconnecting" ? [e.delayMs] : []));
  assert.deepEqual(delays, [10, 1000]); // not the backoff's 20 ms
  const asked = Date.now();
  await until("the third offer", () => server.count("POST", "/rtc/offer") === 3);
  assert.ok(Date.now() - asked >= 900, "the third offer did not wait for Retry-After");
});

test("a restarting or throttling server is busy (retryable), with its Retry-After", async () => {
  const draining = voiceServer().on("POST", "/rtc/offer", () =>
    apiError(503, "draining", "This server is shutting down; retry shortly and another one will take it.", {
      "Retry-After": "5",
    }),
  );
  const restarting = await rejection(sessionOn(draining).session.connectVoice());
  assert.equal(restarting.kind, "busy");
  assert.equal(restarting.retryAfterSeconds, 5);
  assert.match(restarting.message, /restarting/);
  // API Gateway's throttle: 429 with a body that is not the API's.
  const throttled = voiceServer().on("GET", "/ice-servers", () => json(429, { message: "Too Many Requests" }));
  const tooMany = await rejection(sessionOn(throttled).session.connectVoice());
  assert.equal(tooMany.kind, "busy");
  assert.equal(tooMany.status, 429);
  assert.match(tooMany.message, /too many requests/i);
  const startThrottled = new FakeServer().on("POST", "/api/interview/start", () => json(429, { message: "Too Many Requests" }));
  const refused = await rejection(
    InterviewSession.start("http://api.test/api/interview", { userId: "u" }, { fetch: startThrottled.fetch }),
  );
  assert.equal(refused.kind, "busy");
});

test("a busy server's refusal is retried by reconnecting, not given up at once", async () => {
  let offers = 0;
  const server = voiceServer().on("POST", "/rtc/offer", () =>
    ++offers === 2 ? json(429, { message: "Too Many Requests" }) : json(200, { type: "answer", sdp: "v=0 answer" }),
  );
  const { session, events } = sessionOn(server);
  await session.connectVoice({ reconnectDelayMs: 10 });
  FakePeer.instances[0]?.setState("connected");
  FakePeer.instances[0]?.setState("failed");
  await until("the third offer", () => server.count("POST", "/rtc/offer") === 3);
  FakePeer.instances[2]?.setState("connected");
  assert.deepEqual(reconnectAttempts(events), [1, 2]);
  assert.ok(!events.some((e) => e.type === "voice-error"));
});

// -- cookies ------------------------------------------------------------------------------

function withPage(href: string | undefined): void {
  Object.defineProperty(globalThis, "location", {
    value: href === undefined ? undefined : new URL(href),
    configurable: true,
  });
}

afterEach(() => withPage(undefined));

/** One of every request the client makes, on a session of `apiBase`. */
async function everyRequest(apiBase: string, options: { credentials?: RequestCredentials } = {}): Promise<FakeServer> {
  const encoder = new TextEncoder();
  const server = voiceServer()
    .on("POST", "/api/interview/start", () => json(201, { session_id: "s1", token: "tok", status: "created", plan_id: "p" }))
    .on("GET", "/transcript", () => json(200, { turns: [] }))
    .on("POST", "/transcript", () =>
      json(200, {
        candidate_turn: { index: 1, role: "candidate", text: "a" },
        interviewer_turn: { index: 2, role: "interviewer", text: "b" },
        status: "active",
        interview_complete: false,
      }),
    )
    .on("GET", "/events", () =>
      new Response(
        new ReadableStream({
          start(controller) {
            controller.enqueue(encoder.encode(sse({ type: "results", status: "ready" }, { id: 1 })));
            controller.close();
          },
        }),
        { status: 200, headers: { "Content-Type": "text/event-stream" } },
      ),
    )
    .on("POST", "/end", () => json(200, { session_id: "s1", status: "ended", end_reason: "candidate", ended_at: null }))
    .on("GET", "/results", () => json(200, { status: "ready", session_id: "s1" }))
    .on("GET", "/results?format=html", () => new Response("<p>report</p>", { headers: { "Content-Type": "text/html" } }));
  const { session } = await InterviewSession.start(apiBase, { userId: "u" }, { fetch: server.fetch, ...options });
  sessions.push(session);
  const events: InterviewEvent[] = [];
  session.subscribe((event) => events.push(event));
  session.startEvents();
  await until("the results event", () => events.some((e) => e.type === "results"));
  await session.connectVoice();
  await until("the candidates", () => server.count("POST", "/rtc/ice-candidate") === 3);
  await session.status();
  await session.transcript();
  await session.answer("a");
  await session.end();
  await session.results();
  await session.printableReport();
  return server;
}

const EVERY_ROUTE = [
  "POST /api/interview/start",
  "GET /events",
  "GET /ice-servers",
  "POST /rtc/offer",
  "POST /rtc/ice-candidate",
  "GET /status",
  "GET /transcript",
  "POST /transcript",
  "POST /end",
  "GET /results",
  "GET /results?format=html",
];

test("an API on another origin gets cookies on every request (the load balancer's stickiness)", async () => {
  withPage("https://app.example.com/interview");
  const server = await everyRequest("https://api.example.com/api/interview");
  assert.deepEqual([...new Set(server.calls.map((c) => `${c.method} ${c.path}`))].sort(), [...EVERY_ROUTE].sort());
  assert.deepEqual(
    server.calls.filter((c) => c.credentials !== "include").map((c) => `${c.method} ${c.path}`),
    [],
  );
});

test("the same origin's API gets same-origin cookies, and an explicit option wins", async () => {
  withPage("https://app.example.com/demo/");
  const same = await everyRequest("https://app.example.com/api/interview");
  assert.ok(same.calls.length >= EVERY_ROUTE.length);
  assert.ok(same.calls.every((c) => c.credentials === "same-origin"));
  const omitted = await everyRequest("https://api.example.com/api/interview", { credentials: "omit" });
  assert.ok(omitted.calls.every((c) => c.credentials === "omit"));

  assert.equal(defaultCredentials("../api/interview", "https://app.example.com/demo/"), "same-origin");
  assert.equal(defaultCredentials("https://app.example.com:8443/api", "https://app.example.com/"), "include");
  withPage(undefined); // not in a browser: fetch's own default
  assert.equal(defaultCredentials("https://api.example.com/api"), "same-origin");
});

test("close() while the browser asks for the microphone connects nothing and releases it", async () => {
  let grant: (stream: FakeStream) => void = () => undefined;
  getUserMedia = () => new Promise((resolve) => (grant = resolve));
  const server = voiceServer();
  const { session } = sessionOn(server);
  const connecting = session.connectVoice();
  await until("the microphone prompt", () => server.count("GET", "/ice-servers") === 1);
  await new Promise((resolve) => setTimeout(resolve, 10));
  session.close(); // the page went away
  grant(microphone);
  await connecting;
  assert.equal(server.count("POST", "/rtc/offer"), 0);
  assert.equal(FakePeer.instances.length, 0);
  assert.ok(microphone.track.stopped);
});

// -- typed answers: one Idempotency-Key per answer, reused by every retry ------------------

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The server's reply to an answer: the candidate's turn (its text) and the next question. */
const answered = (call: Call, index = 1): Response =>
  json(200, {
    candidate_turn: { index, role: "candidate", text: (call.body as { text: string }).text },
    interviewer_turn: { index: index + 1, role: "interviewer", text: "Next?" },
    status: "active",
    interview_complete: false,
  });

/** The Idempotency-Key of every POST /transcript the server got, in order. */
const answerKeys = (server: FakeServer): (string | null)[] =>
  server.calls.filter((c) => c.method === "POST" && c.path === "/transcript").map((c) => c.headers.get("Idempotency-Key"));

const answerRetries = (events: InterviewEvent[]) =>
  events.flatMap((e) => (e.type === "answer-retrying" ? [e] : []));

test("each typed answer carries its own Idempotency-Key", async () => {
  let index = 1;
  const server = new FakeServer().on("POST", "/transcript", (call) => answered(call, (index += 2) - 2));
  const { session } = sessionOn(server);
  await session.answer("I built a queue.");
  await session.answer("I built a queue."); // the same words to the next question: a new answer
  await session.answer("With Python.");
  const keys = answerKeys(server);
  assert.equal(keys.length, 3);
  for (const key of keys) assert.match(key ?? "", UUID_V4);
  assert.equal(new Set(keys).size, 3, `keys repeat: ${keys.join(", ")}`);
});

test("a lost connection is retried with the same key, and so is a reply cut off mid-body", async () => {
  let posts = 0;
  const server = new FakeServer().on("POST", "/transcript", (call) => {
    posts += 1;
    if (posts === 1) throw new TypeError("fetch failed"); // as fetch says: nothing came back
    if (posts === 2) {
      // Headers, then the connection drops inside the body: the answer may well be stored.
      const body = new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"candidate_turn": {"ind'));
          controller.error(new TypeError("terminated"));
        },
      });
      return new Response(body, { status: 200, headers: { "Content-Type": "application/json" } });
    }
    return answered(call);
  });
  const { session, events } = sessionOn(server, { delayMs: 10 });
  const outcome = await session.answer("I built a queue.");
  assert.equal(outcome.candidate_turn.text, "I built a queue.");
  const keys = answerKeys(server);
  assert.equal(keys.length, 3);
  assert.match(keys[0] ?? "", UUID_V4);
  assert.deepEqual(keys, [keys[0], keys[0], keys[0]]);
  assert.deepEqual(
    answerRetries(events).map((e) => [e.attempt, e.delayMs, e.saved]),
    [
      [2, 10, false],
      [3, 20, false],
    ],
  );
  // The turns reach listeners once the answer is taken.
  assert.deepEqual(
    events.flatMap((e) => (e.type === "turn" ? [e.turn.index] : [])),
    [1, 2],
  );
});

test("a busy server's 503 is retried after its Retry-After, with the same key", async () => {
  let posts = 0;
  const server = new FakeServer().on("POST", "/transcript", (call) =>
    ++posts === 1
      ? apiError(503, "database_unavailable", "The interview database is unavailable; try again shortly.", {
          "Retry-After": "1",
        })
      : answered(call),
  );
  const { session, events } = sessionOn(server, { delayMs: 10 });
  const asked = Date.now();
  await session.answer("I built a queue.");
  assert.ok(Date.now() - asked >= 900, "the retry did not wait for Retry-After");
  const keys = answerKeys(server);
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1]);
  assert.deepEqual(
    answerRetries(events).map((e) => [e.attempt, e.delayMs, e.saved]),
    [[2, 1000, false]],
  );
});

test("202 reply_pending: the answer is stored, and the same key again gets the reply", async () => {
  let posts = 0;
  const candidateTurn = { index: 1, role: "candidate", text: "I built a queue." };
  const server = new FakeServer().on("POST", "/transcript", (call) =>
    ++posts < 3
      ? json(202, { status: "reply_pending", candidate_turn: candidateTurn, message: "The reply is on its way." })
      : answered(call),
  );
  const { session, events } = sessionOn(server, { delayMs: 10 });
  const outcome = await session.answer("I built a queue.");
  assert.equal(outcome.interviewer_turn.text, "Next?");
  assert.equal(new Set(answerKeys(server)).size, 1);
  assert.equal(answerKeys(server).length, 3);
  assert.deepEqual(
    answerRetries(events).map((e) => e.saved),
    [true, true],
  );
  // The stored answer is shown at once; the turn is the same one each time (by index).
  assert.deepEqual(
    events.flatMap((e) => (e.type === "turn" ? [e.turn.index] : [])),
    [1, 1, 1, 2],
  );
});

test("retries are bounded; the same words sent again keep the key until the answer is taken", async () => {
  let down = true;
  const server = new FakeServer().on("POST", "/transcript", (call) => {
    if (down) throw new TypeError("fetch failed");
    return answered(call);
  });
  const { session, events } = sessionOn(server, { maxAttempts: 3, delayMs: 10 });
  const error = await rejection(session.answer("I built a queue."));
  assert.equal(error.kind, "network");
  assert.equal(answerKeys(server).length, 3);
  assert.equal(answerRetries(events).length, 2);
  // The user presses Send again: the answer may be stored already, so it keeps its key.
  down = false;
  await session.answer("I built a queue.");
  const keys = answerKeys(server);
  assert.equal(keys.length, 4);
  assert.equal(new Set(keys).size, 1);
  // Taken: the next answer is a new one, even with the same words.
  await session.answer("I built a queue.");
  assert.notEqual(answerKeys(server)[4], keys[0]);
});

test("a server that stays busy ends in a retryable busy error that says the answer is safe to resend", async () => {
  const server = new FakeServer().on("POST", "/transcript", () =>
    apiError(503, "database_unavailable", "The interview database is unavailable; try again shortly.", {
      "Retry-After": "30",
    }),
  );
  const { session, events } = sessionOn(server, { delayMs: 10, maxDelayMs: 5000 });
  // Retry-After asks for longer than the client waits: no retry now; the user decides.
  const error = await rejection(session.answer("I built a queue."));
  assert.equal(error.kind, "busy");
  assert.equal(error.status, 503);
  assert.equal(error.code, "database_unavailable");
  assert.equal(error.retryAfterSeconds, 30);
  assert.match(error.message, /not be stored twice/);
  assert.equal(answerKeys(server).length, 1);
  assert.equal(answerRetries(events).length, 0);
});

test("a key reused for other words (422) is an error at once, and the next send is a new answer", async () => {
  const server = new FakeServer().on("POST", "/transcript", () =>
    apiError(422, "idempotency_key_reused", "This Idempotency-Key was used for another answer."),
  );
  const { session, events } = sessionOn(server, { delayMs: 10 });
  const error = await rejection(session.answer("I built a queue."));
  assert.equal(error.kind, "invalid_request");
  assert.equal(error.code, "idempotency_key_reused");
  assert.equal(answerKeys(server).length, 1, "a refused key is not retried");
  assert.equal(answerRetries(events).length, 0);
  await rejection(session.answer("I built a queue."));
  const keys = answerKeys(server);
  assert.notEqual(keys[1], keys[0]);
  // An ended interview is refused for good too: no retry.
  const ended = new FakeServer().on("POST", "/transcript", () => apiError(409, "session_closed", "The interview has ended."));
  assert.equal((await rejection(sessionOn(ended, { delayMs: 10 }).session.answer("late"))).kind, "session_ended");
  assert.equal(answerKeys(ended).length, 1);
});

test("a double submit of the same answer shares its key", async () => {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const server = new FakeServer().on("POST", "/transcript", async (call) => {
    await held;
    return answered(call);
  });
  const { session } = sessionOn(server);
  const first = session.answer("I built a queue.");
  const second = session.answer("I built a queue.");
  release();
  await Promise.all([first, second]);
  const keys = answerKeys(server);
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1]);
});

test("an explicit key is sent as given", async () => {
  const server = new FakeServer().on("POST", "/transcript", (call) => answered(call));
  const { session } = sessionOn(server);
  await session.answer("I built a queue.", { idempotencyKey: "answer-7" });
  assert.deepEqual(answerKeys(server), ["answer-7"]);
});

test("a key is a random UUID even without crypto.randomUUID (an insecure context)", () => {
  const native = Object.getOwnPropertyDescriptor(globalThis, "crypto");
  assert.ok(native);
  const getRandomValues = globalThis.crypto.getRandomValues.bind(globalThis.crypto);
  try {
    Object.defineProperty(globalThis, "crypto", { value: { getRandomValues }, configurable: true });
    const keys = Array.from({ length: 50 }, () => newIdempotencyKey());
    for (const key of keys) assert.match(key, UUID_V4);
    assert.equal(new Set(keys).size, 50);
    Object.defineProperty(globalThis, "crypto", { value: undefined, configurable: true });
    const bare = Array.from({ length: 50 }, () => newIdempotencyKey());
    for (const key of bare) assert.match(key, UUID_V4);
    assert.equal(new Set(bare).size, 50);
  } finally {
    Object.defineProperty(globalThis, "crypto", native);
  }
  assert.match(newIdempotencyKey(), UUID_V4);
});
