// A small, dependency-free client for Spool Interview's REST/WebRTC API (/api/interview).
//
//   const session = await InterviewSession.start(apiBase, { userId: "u-1" });
//   session.subscribe((event) => ...);         // turns, speaking, status, connection, results
//   session.startEvents();                      // live events (SSE over fetch, resumable)
//   await session.connectVoice({ audio });      // microphone -> WebRTC -> the interviewer
//   await session.end();
//   const report = await session.waitForResults();
//
// Every failure is an InterviewError with a `kind` the UI can switch on (microphone denied,
// at capacity, session expired, connection lost, ...). A dropped voice connection is
// reconnected automatically with a new offer on the same session; the interview resumes where
// it was. After maxReconnectAttempts attempts in a row that do not come up, it gives up with a
// connection_lost "voice-error" (typed answers still work).
//
// A typed answer carries an Idempotency-Key, one per answer, reused on every retry of it: a
// lost connection, a busy server (503/429, after its Retry-After) or a reply still pending
// (202) is retried a few times without ever storing the answer twice ("answer-retrying"
// events say so); sending the same text again after a failure reuses the key too.
//
// Requests carry cookies when the API is on another origin (see SessionOptions.credentials):
// behind a load balancer, its stickiness cookie keeps a session on one server.

// ---------------------------------------------------------------------------------------------
// API types: generated from the server's /openapi.json (its copy ui/web/openapi.json becomes
// ./api.gen.ts in `make web`), so a field or value the API renames fails the type-check here.

import type { components } from "./api.gen";

type Schemas = components["schemas"];

export type SessionStatus = Schemas["SessionStatus"];
export type EndReason = Schemas["EndReason"];
export type ConnectionState = Schemas["ConnectionState"];
export type Role = Schemas["Role"];
export type StartedSession = Schemas["StartResponse"];
export type Turn = Schemas["Turn"];
export type StatusResponse = Schemas["StatusResponse"];
export type TranscriptResponse = Schemas["TranscriptResponse"];
export type AnswerResponse = Schemas["AnswerResponse"];
// 202 from POST /transcript: the answer is stored, the interviewer's reply is not yet; the same
// request again (same Idempotency-Key) gets it.
export type ReplyPendingResponse = Schemas["AnswerPending"];
export type EndResponse = Schemas["EndResponse"];
// iceTransportPolicy: not sent by the API today; honoured if a server adds it.
export type IceServersResponse = Schemas["IceServersResponse"] & { iceTransportPolicy?: RTCIceTransportPolicy };
export type ReportAnswer = Schemas["Answer"];
export type ReportQuestion = Schemas["QuestionReport"];
export type ReportMetrics = Schemas["Metrics"];
// The language model's evaluation (null without one; then `evaluation_note` says why).
export type Evaluation = Schemas["Evaluation"];
export type CompetencyScore = Schemas["CompetencyScore"];
export type Evidence = Schemas["Evidence"];
export type FlaggedQuote = Schemas["FlaggedQuote"];
export type Recommendation = Evaluation["recommendation"];
export type Report = Schemas["Report"];
/** GET /results when the report could not be computed. */
export type FailedResults = Schemas["ResultsStatus"] & { status: "failed" };
/** The `data` of one /events message; its `type` is the SSE event's name. */
export type SessionEvent = Schemas["SessionEvent"];
type ServerEvent<T extends SessionEvent["type"]> = Extract<SessionEvent, { type: T }>;

// ---------------------------------------------------------------------------------------------
// The client's own types

export interface StartOptions {
  userId: string;
  planId?: string;
  candidateName?: string;
  metadata?: Record<string, unknown>;
  /** The interviewer's voice for this session (e.g. "bf_emma"); the plan's when omitted. */
  voice?: string;
}

export interface SessionCredentials {
  sessionId: string;
  token: string;
}

// ---------------------------------------------------------------------------------------------
// Events

// What the server streams on /events, as listeners get it (with the SSE id), plus what this
// client adds about its own connection.
//
// A "turn" may come again for an index already seen (an interviewer line the candidate cut is
// committed whole, then again with its `interruption` set): replace the turn, do not append
// it (./transcript's mergeTurns). "speaking": started and resumed mean the interviewer is
// heard; paused and interrupted that it is not (the candidate has the floor); queued that the
// whole line is on its way (./transcript's InterviewerLine turns these into the indicator).
export type InterviewEvent =
  | { type: "turn"; id?: string; turn: Turn }
  | { type: "status"; id?: string; status: SessionStatus; reason: EndReason | null }
  | { type: "connection"; id?: string; state: ConnectionState }
  | {
      type: "speaking";
      id?: string;
      role: Role;
      state: ServerEvent<"speaking">["state"];
      index?: number;
      seconds?: number;
    }
  | { type: "candidate"; id?: string; state: ServerEvent<"candidate">["state"] }
  | { type: "results"; id?: string; status: ServerEvent<"results">["status"] }
  | { type: "interviewer"; id?: string; mode: ServerEvent<"interviewer">["mode"]; reason: string | null }
  | { type: "server-error"; id?: string; message: string; reason?: string }
  // Local: the browser side of the voice connection.
  | { type: "peer"; state: RTCPeerConnectionState }
  | { type: "remote-stream"; stream: MediaStream }
  | { type: "reconnecting"; attempt: number; delayMs: number }
  // A typed answer is sent again after delayMs (same Idempotency-Key); `saved`: the server
  // said it is stored, only the interviewer's reply is missing.
  | { type: "answer-retrying"; attempt: number; maxAttempts: number; delayMs: number; saved: boolean }
  | { type: "voice-error"; error: InterviewError };

export type Listener = (event: InterviewEvent) => void;

// ---------------------------------------------------------------------------------------------
// Errors

export type ErrorKind =
  | "microphone_denied" // the user (or policy) refused the microphone
  | "microphone_unavailable" // no microphone, it is busy, or the page is not on HTTPS
  | "at_capacity" // 503: every voice slot is taken; retry after `retryAfterSeconds`
  | "busy" // 503 draining (the server is restarting) or 429 (too many requests): retry shortly
  | "voice_unavailable" // 503: voice is loading or disabled on this server
  | "session_expired" // the session's time ran out
  | "session_ended" // the interview is over; no more answers or voice
  | "already_connected" // another tab holds this session's voice connection
  | "connection_lost" // the voice connection dropped and could not be restored
  | "not_found" // unknown session or wrong token
  | "invalid_request" // 400/422: the server refused what was sent
  | "network" // the server could not be reached
  | "server"; // anything else the server reported

export class InterviewError extends Error {
  readonly kind: ErrorKind;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(
    kind: ErrorKind,
    message: string,
    options: { status?: number; code?: string; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "InterviewError";
    this.kind = kind;
    this.status = options.status;
    this.code = options.code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** A response's Retry-After in seconds (its delay form; the date form is not used by the API). */
function retryAfterSeconds(response: Response): number | undefined {
  const header = response.headers.get("Retry-After");
  return header !== null && /^\d+$/.test(header) ? Number(header) : undefined;
}

async function errorFromResponse(response: Response, what: string): Promise<InterviewError> {
  let code: string | undefined;
  let message = `${what}: HTTP ${response.status}`;
  try {
    const body = (await response.json()) as Partial<Schemas["ErrorResponse"]>;
    code = body.error?.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // Not JSON (a proxy's page): keep the generic message.
  }
  const retry = retryAfterSeconds(response);
  const meta = {
    status: response.status,
    ...(code === undefined ? {} : { code }),
    ...(retry === undefined ? {} : { retryAfterSeconds: retry }),
  };
  const status = response.status;
  if (status === 503 && code === "at_capacity") return new InterviewError("at_capacity", message, meta);
  if (status === 503 && code === "draining") {
    // This server is shutting down; the next request lands on one that stays.
    return new InterviewError(
      "busy",
      "The interview server is restarting. Retrying in a moment reaches another one; nothing said so far is lost.",
      meta,
    );
  }
  if (status === 429) {
    // A gateway's throttle (its body is not ours): the same request succeeds a little later.
    return new InterviewError(
      "busy",
      "The interview server is handling too many requests right now. Please try again in a few seconds.",
      meta,
    );
  }
  if (status === 503 && code?.startsWith("voice_")) {
    return new InterviewError("voice_unavailable", message, meta);
  }
  if (status === 410) return new InterviewError("session_expired", message, meta);
  if (status === 409 && code === "session_expired") {
    return new InterviewError("session_expired", message, meta);
  }
  if (status === 409 && code === "session_closed") {
    // "... has ended." / "... has failed." (servers before the session_expired code also
    // said "The interview has expired." here)
    const kind = /expired/i.test(message) ? "session_expired" : "session_ended";
    return new InterviewError(kind, message, meta);
  }
  if (status === 409 && code === "already_connected") {
    return new InterviewError("already_connected", message, meta);
  }
  if (status === 404 || status === 401) return new InterviewError("not_found", message, meta);
  if (status === 400 || status === 413 || status === 422) {
    return new InterviewError("invalid_request", message, meta);
  }
  return new InterviewError("server", message, meta);
}

/** The error of an answer whose retries ran out: retryable, and it says whether it is stored. */
function answerNotTaken(failure: InterviewError, saved: boolean): InterviewError {
  if (saved || failure.kind === "network" || failure.kind === "busy") return failure;
  // A 503 (database unavailable), a proxy's 502/504, a conflict: the server is busy; nothing
  // is lost by sending the same answer again.
  return new InterviewError(
    "busy",
    `${failure.message} Send your answer again in a moment: it will not be stored twice.`,
    {
      ...(failure.status === undefined ? {} : { status: failure.status }),
      ...(failure.code === undefined ? {} : { code: failure.code }),
      ...(failure.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: failure.retryAfterSeconds }),
      cause: failure,
    },
  );
}

function microphoneError(error: unknown): InterviewError {
  const name = error instanceof DOMException ? error.name : "";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new InterviewError(
      "microphone_denied",
      "Microphone access was denied. Allow the microphone for this site in your browser's " +
        "settings and try again, or answer by typing.",
      { cause: error },
    );
  }
  const detail =
    name === "NotFoundError" || name === "OverconstrainedError"
      ? "No microphone was found."
      : name === "NotReadableError" || name === "AbortError"
        ? "The microphone is in use by another application or could not be started."
        : "The microphone could not be opened.";
  return new InterviewError("microphone_unavailable", `${detail} You can answer by typing.`, {
    cause: error,
  });
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

/**
 * A new Idempotency-Key: a random (version 4) UUID. crypto.randomUUID exists only in secure
 * contexts (HTTPS, localhost) and recent browsers; getRandomValues works everywhere else.
 */
export function newIdempotencyKey(): string {
  const webCrypto = globalThis.crypto as Crypto | undefined;
  if (typeof webCrypto?.randomUUID === "function") return webCrypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (typeof webCrypto?.getRandomValues === "function") webCrypto.getRandomValues(bytes);
  else {
    // No Web Crypto at all: a key only has to be unique among one session's answers.
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40; // version 4
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80; // RFC 4122 variant
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A failed answer that the same request (same key) may still turn into a success: the
 * server was not reached or its reply was lost, it was busy (503, 429; a proxy's 502/504), or
 * another request on the session raced it (409 conflict). The key makes each retry safe.
 */
function retryableAnswerFailure(error: InterviewError): boolean {
  if (error.kind === "network") return true;
  if (error.status !== undefined && [429, 502, 503, 504].includes(error.status)) return true;
  return error.status === 409 && error.code === "conflict";
}

/** Parse one Server-Sent Events block ("field: value" lines) into its fields. */
function parseSseBlock(block: string): { id?: string; event: string; data: string; retry?: number } | null {
  let id: string | undefined;
  let event = "message";
  const data: string[] = [];
  let retry: number | undefined;
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  if (data.length === 0 && event === "message") return null;
  return {
    ...(id === undefined ? {} : { id }),
    event,
    data: data.join("\n"),
    ...(retry === undefined ? {} : { retry }),
  };
}

/** What listeners get for one server event; null for a newer server's event this client does
 * not know. */
function toEvent(data: SessionEvent, id: string | undefined): InterviewEvent | null {
  const withId = id === undefined ? {} : { id };
  switch (data.type) {
    case "turn":
      return { type: "turn", ...withId, turn: data };
    case "status":
      return { type: "status", ...withId, status: data.status, reason: data.reason };
    case "connection":
      return { type: "connection", ...withId, state: data.state };
    case "speaking":
      return {
        type: "speaking",
        ...withId,
        role: data.role,
        state: data.state,
        ...(typeof data.index === "number" ? { index: data.index } : {}),
        ...(typeof data.seconds === "number" ? { seconds: data.seconds } : {}),
      };
    case "candidate":
      return { type: "candidate", ...withId, state: data.state };
    case "results":
      return { type: "results", ...withId, status: data.status };
    case "interviewer":
      return { type: "interviewer", ...withId, mode: data.mode, reason: data.reason };
    case "error":
      return {
        type: "server-error",
        ...withId,
        message: data.message ?? "The server reported an error.",
        ...(typeof data.reason === "string" ? { reason: data.reason } : {}),
      };
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The session

export interface VoiceOptions {
  /** Constraints for getUserMedia's audio; the browser's echo cancellation is on by default. */
  audio?: MediaTrackConstraints | boolean;
  /** "relay" sends media only through TURN. Default: what the server says, else "all". */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /**
   * How many connection attempts in a row may fail before giving up with a "voice-error"
   * event of kind connection_lost (default 5). An attempt fails when its offer is refused, or
   * when its connection fails or does not come up within connectTimeoutSeconds; the first
   * connection counts too. The count starts over only once a connection is "connected".
   */
  maxReconnectAttempts?: number;
  /** Seconds to wait for "connected" after the answer (default 30); then the attempt failed. */
  connectTimeoutSeconds?: number;
  /**
   * The first reconnect's delay in milliseconds (default 1000), doubled for each failure in a
   * row up to 10 s; a server's Retry-After is waited for when it is longer.
   */
  reconnectDelayMs?: number;
}

export interface AnswerOptions {
  /**
   * This answer's Idempotency-Key (1-255 printable ASCII characters, no spaces). By default
   * the client makes one per answer, and the same text sent again after a failure reuses it.
   */
  idempotencyKey?: string;
  /** Stops the answer's retries (and aborts the request in flight). */
  signal?: AbortSignal;
}

export interface AnswerRetryOptions {
  /** Attempts in all for one answer, the first included (default 5). */
  maxAttempts?: number;
  /** The first retry's delay in milliseconds (default 500), doubled for each one after. */
  delayMs?: number;
  /**
   * The longest wait between two attempts (default 15000 ms). A server's Retry-After is waited
   * for; one asking for longer than this ends the retries (the error says when to try again).
   */
  maxDelayMs?: number;
}

export interface SessionOptions {
  /** Replace window.fetch (tests, instrumentation). */
  fetch?: typeof fetch;
  /** How a typed answer is retried (each retry with the answer's own Idempotency-Key). */
  answerRetry?: AnswerRetryOptions;
  /**
   * Cookies on every request. Default: "include" when apiBase is on another origin than the
   * page (a load balancer's stickiness cookie must travel with a session's signaling, ICE and
   * events, so they reach the server that holds its connection; the API must then answer
   * with Access-Control-Allow-Credentials), else "same-origin".
   */
  credentials?: RequestCredentials;
}

/** "include" when `apiBase` is on another origin than the page, else "same-origin". */
export function defaultCredentials(apiBase: string, pageUrl: string | undefined = globalThis.location?.href): RequestCredentials {
  if (pageUrl === undefined) return "same-origin"; // not in a browser: no page origin
  try {
    return new URL(apiBase, pageUrl).origin === new URL(pageUrl).origin ? "same-origin" : "include";
  } catch {
    return "same-origin";
  }
}

const DISCONNECTED_GRACE_MS = 4000; // ICE often recovers from "disconnected" by itself
const RECONNECT_BASE_MS = 1000;
const RECONNECT_MAX_MS = 10000;
const ANSWER_ATTEMPTS = 5;
const ANSWER_RETRY_BASE_MS = 500;
const ANSWER_RETRY_MAX_MS = 15000;

export class InterviewSession {
  readonly apiBase: string;
  readonly sessionId: string;
  readonly token: string;

  readonly credentials: RequestCredentials;

  private readonly fetchImpl: typeof fetch;
  private readonly answerRetry: AnswerRetryOptions;
  private readonly listeners = new Set<Listener>();
  // The answer sent last and not yet taken for sure: sent again (same text), it keeps its key.
  private unsettledAnswer: { text: string; key: string } | null = null;
  private eventsAbort: AbortController | null = null;
  private lastEventId: string | null = null;

  private microphone: MediaStream | null = null;
  private pc: RTCPeerConnection | null = null;
  private voiceOptions: VoiceOptions = {};
  private voiceWanted = false; // between connectVoice() and end()/disconnectVoice()
  private reconnecting: Promise<void> | null = null;
  private voiceStop: AbortController | null = null; // aborted on hang-up: ends a reconnect's wait
  private failures = 0; // connection attempts in a row that did not come up (0 once connected)
  private pcConnected = false; // the current peer connection has been "connected"
  private disconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private finished = false;

  constructor(apiBase: string, credentials: SessionCredentials, options: SessionOptions = {}) {
    this.apiBase = apiBase.replace(/\/+$/, "");
    this.sessionId = credentials.sessionId;
    this.token = credentials.token;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.credentials = options.credentials ?? defaultCredentials(this.apiBase);
    this.answerRetry = options.answerRetry ?? {};
  }

  /** POST /start: a new interview session. */
  static async start(
    apiBase: string,
    start: StartOptions,
    options: SessionOptions = {},
  ): Promise<{ session: InterviewSession; started: StartedSession }> {
    const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    const body: Schemas["StartRequest"] = { user_id: start.userId };
    if (start.planId) body.plan_id = start.planId;
    if (start.candidateName) body.candidate_name = start.candidateName;
    if (start.metadata) body.metadata = start.metadata;
    if (start.voice) body.voice = start.voice;
    let response: Response;
    try {
      response = await fetchImpl(`${apiBase.replace(/\/+$/, "")}/start`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: options.credentials ?? defaultCredentials(apiBase),
      });
    } catch (error) {
      throw new InterviewError("network", "The interview server could not be reached.", { cause: error });
    }
    if (response.status !== 201) throw await errorFromResponse(response, "start");
    const started = (await response.json()) as StartedSession;
    const session = new InterviewSession(
      apiBase,
      { sessionId: started.session_id, token: started.token },
      options,
    );
    return { session, started };
  }

  // -- listeners ---------------------------------------------------------------------------

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: InterviewEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (error) {
        console.error("interview listener failed", error);
      }
    }
  }

  // -- REST --------------------------------------------------------------------------------

  private async request(path: string, init: RequestInit = {}, what = path): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${this.token}`);
    if (init.body !== undefined) headers.set("Content-Type", "application/json");
    try {
      return await this.fetchImpl(`${this.apiBase}/${encodeURIComponent(this.sessionId)}${path}`, {
        ...init,
        headers,
        cache: "no-store",
        credentials: this.credentials,
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new InterviewError("network", `The interview server could not be reached (${what}).`, {
        cause: error,
      });
    }
  }

  private async json<T>(path: string, init: RequestInit = {}, ok = 200): Promise<T> {
    const response = await this.request(path, init);
    if (response.status !== ok) throw await errorFromResponse(response, path);
    return (await response.json()) as T;
  }

  status(): Promise<StatusResponse> {
    return this.json<StatusResponse>("/status");
  }

  async transcript(): Promise<Turn[]> {
    return (await this.json<TranscriptResponse>("/transcript")).turns;
  }

  /**
   * A typed answer; returns the candidate's turn and the interviewer's next line. Sent with an
   * Idempotency-Key and retried with it (a lost connection, 503/429 after their Retry-After,
   * 202 reply_pending: the answer is stored and the retry gets the reply), so it is stored
   * once however often it is sent. When the retries run out, the error is retryable (kind
   * network or busy): the same text sent again keeps the same key.
   */
  async answer(text: string, options: AnswerOptions = {}): Promise<AnswerResponse> {
    let key = options.idempotencyKey;
    if (key === undefined) {
      // A double submit (or a resend after a failure) of the same words is the same answer.
      if (this.unsettledAnswer?.text !== text) this.unsettledAnswer = { text, key: newIdempotencyKey() };
      key = this.unsettledAnswer.key;
    }
    const settle = (): void => {
      if (this.unsettledAnswer?.key === key) this.unsettledAnswer = null;
    };
    const maxAttempts = Math.max(1, this.answerRetry.maxAttempts ?? ANSWER_ATTEMPTS);
    const baseMs = this.answerRetry.delayMs ?? ANSWER_RETRY_BASE_MS;
    const maxDelayMs = this.answerRetry.maxDelayMs ?? ANSWER_RETRY_MAX_MS;
    const body = JSON.stringify({ text } satisfies Schemas["AnswerRequest"]);
    for (let attempt = 1; ; attempt++) {
      const sent = await this.postAnswer(body, key, options.signal);
      if ("outcome" in sent) {
        settle();
        // The same turns also arrive as events; listeners replace a turn by its index.
        this.emit({ type: "turn", turn: sent.outcome.candidate_turn });
        this.emit({ type: "turn", turn: sent.outcome.interviewer_turn });
        return sent.outcome;
      }
      const { failure, saved } = sent;
      if (!saved && !retryableAnswerFailure(failure)) {
        // Refused for good (ended, invalid, a key reused for other words: a bug): sending it
        // again is a new answer.
        settle();
        throw failure;
      }
      const backoffMs = Math.min(baseMs * 2 ** (attempt - 1), maxDelayMs);
      const askedMs = (failure.retryAfterSeconds ?? 0) * 1000;
      if (attempt >= maxAttempts || askedMs > maxDelayMs) throw answerNotTaken(failure, saved);
      const delayMs = Math.max(backoffMs, askedMs);
      this.emit({ type: "answer-retrying", attempt: attempt + 1, maxAttempts, delayMs, saved });
      await sleep(delayMs, options.signal);
    }
  }

  /** One POST /transcript: the outcome, or why not (`saved`: 202, the answer is stored). */
  private async postAnswer(
    body: string,
    key: string,
    signal: AbortSignal | undefined,
  ): Promise<{ outcome: AnswerResponse } | { failure: InterviewError; saved: boolean }> {
    let response: Response;
    try {
      response = await this.request(
        "/transcript",
        { method: "POST", headers: { "Idempotency-Key": key }, body, ...(signal ? { signal } : {}) },
        "answer",
      );
    } catch (error) {
      if (error instanceof InterviewError) return { failure: error, saved: false };
      throw error; // aborted
    }
    if (response.status === 200) {
      try {
        return { outcome: (await response.json()) as AnswerResponse };
      } catch (error) {
        if (isAbort(error)) throw error;
        // The connection dropped inside the body: the answer is likely stored; the key says.
        const failure = new InterviewError("network", "The interview server's reply was cut off (answer).", {
          cause: error,
        });
        return { failure, saved: false };
      }
    }
    if (response.status !== 202) return { failure: await errorFromResponse(response, "answer"), saved: false };
    const pending = (await response.json().catch(() => ({}))) as Partial<ReplyPendingResponse>;
    if (pending.candidate_turn) this.emit({ type: "turn", turn: pending.candidate_turn });
    const retry = retryAfterSeconds(response);
    const failure = new InterviewError(
      "busy",
      "Your answer is saved, but the interviewer's reply is not ready yet. Send it again to get " +
        "the reply: it will not be stored twice.",
      { status: 202, code: "reply_pending", ...(retry === undefined ? {} : { retryAfterSeconds: retry }) },
    );
    return { failure, saved: true };
  }

  iceServers(): Promise<IceServersResponse> {
    return this.json<IceServersResponse>("/ice-servers");
  }

  /** End the interview (idempotent) and hang up the voice connection. */
  async end(): Promise<EndResponse> {
    this.voiceWanted = false;
    try {
      return await this.json<EndResponse>("/end", { method: "POST" });
    } finally {
      this.closeVoice();
    }
  }

  /** GET /results once: the report, the failure, or null while it is being computed. */
  async results(): Promise<Report | FailedResults | null> {
    const response = await this.request("/results");
    if (response.status === 202) return null;
    if (response.status === 409) {
      const error = await errorFromResponse(response, "results");
      if (error.code === "interview_running") return null;
      throw error;
    }
    if (response.status !== 200) throw await errorFromResponse(response, "results");
    return (await response.json()) as Report | FailedResults;
  }

  /** Poll /results until the report is ready (or failed). */
  async waitForResults(options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Report | FailedResults> {
    const deadline = Date.now() + (options.timeoutMs ?? 10 * 60 * 1000);
    let delay = 500;
    for (;;) {
      const outcome = await this.results();
      if (outcome !== null) return outcome;
      if (Date.now() > deadline) {
        throw new InterviewError("server", "The results were not ready in time; try again later.");
      }
      await sleep(delay, options.signal);
      delay = Math.min(delay * 1.5, 3000);
    }
  }

  /**
   * While the report's evaluation is retried in the background (`evaluation_status`
   * "pending_retry": the model failed when the report was written), poll /results every
   * `intervalMs` (default 30 s) until it is filled in or given up; returns that report.
   */
  async waitForEvaluation(
    options: { signal?: AbortSignal; intervalMs?: number; timeoutMs?: number } = {},
  ): Promise<Report | FailedResults> {
    const deadline = Date.now() + (options.timeoutMs ?? 2 * 60 * 60 * 1000);
    for (;;) {
      await sleep(options.intervalMs ?? 30000, options.signal);
      const outcome = await this.results();
      if (outcome !== null && (outcome.status === "failed" || outcome.evaluation_status !== "pending_retry")) {
        return outcome;
      }
      if (Date.now() > deadline) {
        throw new InterviewError("server", "The evaluation was not ready in time; the report stands without it.");
      }
    }
  }

  /**
   * Erase this interview on the server (DELETE /{id}): its transcript, report and every other
   * record. Resolves once it is gone, also when it already was (404); the session is unusable
   * afterwards.
   */
  async erase(): Promise<void> {
    this.stopEvents();
    this.disconnectVoice();
    const response = await this.request("", { method: "DELETE" }, "erase");
    if (response.status === 204 || response.status === 404) return;
    throw await errorFromResponse(response, "erase");
  }

  /** The printable HTML report (GET /results?format=html) as text, or null if not offered. */
  async printableReport(): Promise<string | null> {
    const response = await this.request("/results?format=html", {
      headers: { Accept: "text/html" },
    });
    const type = response.headers.get("Content-Type") ?? "";
    if (response.status !== 200 || !type.includes("text/html")) return null;
    return await response.text();
  }

  // -- live events (SSE over fetch: EventSource cannot send the bearer token) --------------

  /** Follow /events until stop() or the results event; resumes with Last-Event-ID. */
  startEvents(): void {
    if (this.eventsAbort !== null) return;
    const abort = new AbortController();
    this.eventsAbort = abort;
    void this.runEvents(abort.signal);
  }

  stopEvents(): void {
    this.eventsAbort?.abort();
    this.eventsAbort = null;
  }

  private async runEvents(signal: AbortSignal): Promise<void> {
    let retryMs = 1000;
    let failures = 0;
    while (!signal.aborted) {
      let done = false;
      let received = 0;
      let ended = false;
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream" };
        if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
        const response = await this.request("/events", { headers, signal }, "events");
        if (response.status === 404 || response.status === 401) {
          this.emit({ type: "server-error", message: "The live events of this session are not available." });
          return;
        }
        if (response.status !== 200 || response.body === null) throw new Error(`events: HTTP ${response.status}`);
        failures = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done: finished } = await reader.read();
          if (finished) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let split = buffer.indexOf("\n\n");
          while (split !== -1) {
            const parsed = parseSseBlock(buffer.slice(0, split));
            buffer = buffer.slice(split + 2);
            split = buffer.indexOf("\n\n");
            if (parsed === null) continue;
            if (parsed.retry !== undefined) retryMs = parsed.retry;
            if (parsed.id !== undefined) this.lastEventId = parsed.id;
            let data: SessionEvent;
            try {
              data = JSON.parse(parsed.data) as SessionEvent;
            } catch {
              continue;
            }
            // Not an event object (a proxy's page, a newer server's format): skipped.
            if (typeof data !== "object" || data === null) continue;
            const event = toEvent(data, parsed.id);
            if (event === null) continue;
            this.emit(event);
            received += 1;
            if (event.type === "results") done = true; // the stream ends for good after it
          }
        }
        ended = true;
      } catch (error) {
        if (signal.aborted || isAbort(error)) return;
        failures += 1;
      }
      if (done) return;
      // Behind a proxy that buffers whole responses (API Gateway's HTTP APIs) the server runs
      // with EVENTS_DELIVERY=poll and ends a response just after its first events: ask again
      // at once, or every event would wait `retry` more. A response without events (the
      // server's timeout) or a failure waits `retry`, backing off only while requests fail.
      if (ended && received > 0) continue;
      try {
        await sleep(Math.min(retryMs * 2 ** Math.min(failures, 4), 15000), signal);
      } catch {
        return;
      }
    }
  }

  // -- voice over WebRTC -------------------------------------------------------------------

  get voiceConnected(): boolean {
    return this.pc?.connectionState === "connected";
  }

  /**
   * Open the microphone and connect to the interviewer. Resolves once the offer is answered
   * (the media flows shortly after: watch the "peer" events), or without connecting when
   * close() is called meanwhile. Throws InterviewError.
   */
  async connectVoice(options: VoiceOptions = {}): Promise<void> {
    this.voiceOptions = options;
    this.finished = false;
    this.failures = 0;
    this.voiceStop?.abort();
    this.voiceStop = new AbortController();
    // ICE servers first: a closed or expired session fails here, before asking for the mic.
    const ice = await this.iceServers();
    if (this.microphone === null) {
      if (!navigator.mediaDevices?.getUserMedia) {
        throw new InterviewError(
          "microphone_unavailable",
          "This page cannot use a microphone (it needs HTTPS, or localhost). You can answer by typing.",
        );
      }
      try {
        this.microphone = await navigator.mediaDevices.getUserMedia({
          audio: options.audio ?? { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
          video: false,
        });
      } catch (error) {
        throw microphoneError(error);
      }
    }
    if (this.finished) {
      // close() while the browser asked for the microphone: release it, connect nothing.
      this.closeVoice();
      return;
    }
    this.voiceWanted = true;
    try {
      await this.offer(ice);
    } catch (error) {
      this.voiceWanted = false;
      this.closeVoice();
      throw error;
    }
  }

  /** Hang up the voice connection but keep the session (typed answers still work). */
  disconnectVoice(): void {
    this.voiceWanted = false;
    this.closeVoice();
  }

  /** Stop everything this client holds: events, voice, microphone. */
  close(): void {
    this.finished = true;
    this.stopEvents();
    this.disconnectVoice();
  }

  /** Mute or unmute the microphone (the connection stays up). */
  setMicrophoneEnabled(enabled: boolean): void {
    for (const track of this.microphone?.getAudioTracks() ?? []) track.enabled = enabled;
  }

  private clearTimers(): void {
    if (this.disconnectTimer !== null) clearTimeout(this.disconnectTimer);
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.disconnectTimer = null;
    this.connectTimer = null;
  }

  private closeVoice(): void {
    this.clearTimers();
    const pc = this.pc;
    this.pc = null;
    if (pc !== null) {
      pc.onconnectionstatechange = null;
      pc.onicecandidate = null;
      pc.ontrack = null;
      pc.close();
      this.emit({ type: "peer", state: "closed" });
    }
    if (!this.voiceWanted) this.voiceStop?.abort();
    if (!this.voiceWanted && this.microphone !== null) {
      for (const track of this.microphone.getTracks()) track.stop();
      this.microphone = null;
    }
  }

  private async offer(ice: IceServersResponse): Promise<void> {
    const microphone = this.microphone;
    if (microphone === null) throw new InterviewError("microphone_unavailable", "No microphone.");
    const policy = this.voiceOptions.iceTransportPolicy ?? ice.iceTransportPolicy ?? "all";
    if (policy === "relay" && ice.iceServers.length === 0) {
      throw new InterviewError("server", "Relay-only media needs a TURN server, and the server offers none.");
    }
    // An explicit list, even empty: nothing but the API's own servers is contacted.
    const pc = new RTCPeerConnection({ iceServers: ice.iceServers, iceTransportPolicy: policy });
    this.pc = pc;
    this.pcConnected = false;

    // The data channel MUST exist before the offer: the server's media pipeline starts only
    // once it is open (an offer without one is refused). "text" is fastrtc's own label.
    pc.createDataChannel("text");
    for (const track of microphone.getAudioTracks()) pc.addTrack(track, microphone);

    pc.ontrack = (event) => {
      const stream = event.streams[0] ?? new MediaStream([event.track]);
      this.emit({ type: "remote-stream", stream });
    };

    // Trickle ICE: candidates found before the answer wait until the server knows this
    // connection (it refuses candidates for an unknown one).
    const pending: (RTCIceCandidateInit | null)[] = [];
    let answered = false;
    const sendCandidate = async (candidate: RTCIceCandidateInit | null): Promise<void> => {
      const body = candidate ?? { candidate: "", sdpMid: "0", sdpMLineIndex: 0 };
      const response = await this.request(
        "/rtc/ice-candidate",
        {
          method: "POST",
          body: JSON.stringify({
            candidate: body.candidate ?? "",
            sdpMid: body.sdpMid ?? null,
            sdpMLineIndex: body.sdpMLineIndex ?? null,
          } satisfies Schemas["IceCandidateRequest"]),
        },
        "ice-candidate",
      ).catch(() => null);
      // A refused candidate is not fatal: the others (and the connection timeout) decide.
      if (response !== null && !response.ok) await response.body?.cancel();
    };
    let chain = Promise.resolve();
    const queue = (candidate: RTCIceCandidateInit | null): void => {
      chain = chain.then(() => (this.pc === pc ? sendCandidate(candidate) : undefined));
    };
    pc.onicecandidate = (event) => {
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      if (answered) queue(candidate);
      else pending.push(candidate);
    };

    pc.onconnectionstatechange = () => this.onPeerState(pc);

    await pc.setLocalDescription(await pc.createOffer());
    const local = pc.localDescription;
    if (local === null) throw new InterviewError("server", "The browser made no offer.");
    const response = await this.request(
      "/rtc/offer",
      {
        method: "POST",
        body: JSON.stringify({ sdp: local.sdp, type: local.type } satisfies Schemas["RtcOfferRequest"]),
      },
      "offer",
    );
    if (response.status !== 200) throw await errorFromResponse(response, "offer");
    const answer = (await response.json()) as Schemas["RtcDescription"];
    if (this.pc !== pc) return; // hung up meanwhile
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type as RTCSdpType });
    answered = true;
    for (const candidate of pending.splice(0)) queue(candidate);

    const timeoutMs = (this.voiceOptions.connectTimeoutSeconds ?? 30) * 1000;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (this.pc === pc && pc.connectionState !== "connected" && pc.connectionState !== "closed") {
        this.onDropped(pc, "the voice connection did not come up");
      }
    }, timeoutMs);
  }

  private onPeerState(pc: RTCPeerConnection): void {
    if (this.pc !== pc) return;
    const state = pc.connectionState;
    this.emit({ type: "peer", state });
    if (state === "connected") {
      this.clearTimers();
      this.pcConnected = true;
      this.failures = 0; // only a connection that really came up starts the count over
    } else if (state === "disconnected") {
      // Often a brief network blip that ICE repairs; reconnect only if it lasts.
      this.disconnectTimer ??= setTimeout(() => {
        this.disconnectTimer = null;
        if (this.pc === pc && pc.connectionState !== "connected") this.onDropped(pc, "disconnected");
      }, DISCONNECTED_GRACE_MS);
    } else if (state === "failed" || state === "closed") {
      this.onDropped(pc, state);
    }
  }

  private onDropped(pc: RTCPeerConnection, why: string): void {
    if (this.pc !== pc || !this.voiceWanted || this.reconnecting !== null) return;
    // A connection that never came up (it timed out or failed while connecting) is a failed
    // attempt; one that worked and then dropped is not: its reconnects count from 1.
    if (!this.pcConnected) this.failures += 1;
    this.reconnecting = this.reconnect(why).finally(() => {
      this.reconnecting = null;
    });
  }

  /**
   * New offers on the same session, with backoff, unless the interview is over. Returns once
   * an offer is answered: then that connection's "connected" starts the count over, and its
   * failure or timeout comes back here as the next failed attempt. After maxReconnectAttempts
   * failures in a row, a "voice-error" (connection_lost) ends the voice connection.
   */
  private async reconnect(why: string): Promise<void> {
    const maxFailures = this.voiceOptions.maxReconnectAttempts ?? 5;
    const baseMs = this.voiceOptions.reconnectDelayMs ?? RECONNECT_BASE_MS;
    const stop = this.voiceStop?.signal;
    this.closeVoiceKeepMic();
    let lastError: InterviewError | null = null;
    while (this.voiceWanted && !this.finished && this.failures < maxFailures) {
      // The server hangs up by itself after its closing line, and on /end: then the
      // interview is over and there is nothing to reconnect.
      try {
        const status = await this.status();
        if (status.status !== "created" && status.status !== "active") {
          this.voiceWanted = false;
          this.closeVoice();
          return;
        }
      } catch (error) {
        if (error instanceof InterviewError && error.kind !== "network") {
          lastError = error;
          break;
        }
      }
      const attempt = this.failures + 1;
      const backoffMs = Math.min(baseMs * 2 ** (attempt - 1), RECONNECT_MAX_MS);
      // A busy or restarting server says when to come back.
      const delayMs = Math.max(backoffMs, (lastError?.retryAfterSeconds ?? 0) * 1000);
      this.emit({ type: "reconnecting", attempt, delayMs });
      try {
        await sleep(delayMs, stop);
      } catch {
        return; // hung up meanwhile
      }
      if (!this.voiceWanted || this.finished) return;
      try {
        await this.offer(await this.iceServers());
        return;
      } catch (error) {
        this.failures += 1;
        lastError =
          error instanceof InterviewError
            ? error
            : new InterviewError("connection_lost", String(error), { cause: error });
        this.closeVoiceKeepMic();
        // Closed, expired, unknown: retrying cannot help. Busy (409, 429, 503): it may.
        if (["session_ended", "session_expired", "not_found", "invalid_request"].includes(lastError.kind)) break;
      }
    }
    if (!this.voiceWanted || this.finished) return;
    this.voiceWanted = false;
    this.closeVoice();
    const error =
      lastError !== null && ["session_ended", "session_expired", "not_found"].includes(lastError.kind)
        ? lastError
        : new InterviewError(
            "connection_lost",
            `The voice connection was lost (${why}) and could not be restored. You can try ` +
              "again or answer by typing; the interview keeps everything said so far.",
            lastError === null ? {} : { cause: lastError },
          );
    this.emit({ type: "voice-error", error });
  }

  private closeVoiceKeepMic(): void {
    this.clearTimers();
    const pc = this.pc;
    this.pc = null;
    if (pc !== null) {
      pc.onconnectionstatechange = null;
      pc.onicecandidate = null;
      pc.close();
    }
  }
}
