// A voice interview page over the REST/WebRTC API: start, talk, see the transcript, end, and
// read the results. Uses only ./client (no other dependency than React).
//
//   <VoiceInterviewPageREST apiBase="/api/interview" userId="candidate-42" planId="..." />
//
// States: ready -> connecting -> live -> ended; "error" shows what went wrong (announced to
// screen readers) and what can still be done (retry voice, answer by typing, end).

import { useCallback, useEffect, useId, useLayoutEffect, useMemo, useRef, useState } from "react";
import type { FormEvent, ReactElement } from "react";

import {
  InterviewError,
  InterviewSession,
  type Evaluation,
  type FailedResults,
  type InterviewEvent,
  type Report,
  type SessionCredentials,
  type Turn,
} from "./client";
import { InterviewerLine, mergeTurns, orderedTurns, turnView } from "./transcript";

export type Phase = "ready" | "connecting" | "live" | "ended" | "error";

export interface VoiceInterviewPageRESTProps {
  /** Base URL of the interview API, e.g. "https://interviews.example.com/api/interview". */
  apiBase: string;
  /** Your id for the candidate (required by POST /start). */
  userId: string;
  /** Interview plan; the server's default when omitted. */
  planId?: string;
  /** Pre-filled candidate name; the field is shown when `askName` (default true). */
  candidateName?: string;
  askName?: boolean;
  /** Free-form JSON kept with the session. */
  metadata?: Record<string, unknown>;
  /** The interviewer's voice (e.g. "bf_emma"); the plan's when omitted. */
  voice?: string;
  /** Join a session your backend already started, instead of POST /start. */
  session?: SessionCredentials;
  /** "relay" forces media through TURN (for networks that need it). */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** getUserMedia audio constraints. */
  audioConstraints?: MediaTrackConstraints | boolean;
  /**
   * Cookies on the API's requests. Default: "include" when apiBase is on another origin (a
   * load balancer's stickiness cookie keeps the session on one server), else "same-origin".
   */
  credentials?: RequestCredentials;
  title?: string;
  onPhaseChange?: (phase: Phase) => void;
  onResults?: (results: Report | FailedResults) => void;
}

type Speaker = "interviewer" | "candidate" | "transcribing" | "nothing_heard" | null;

const PHASE_LABEL: Record<Phase, string> = {
  ready: "Ready to start",
  connecting: "Connecting…",
  live: "Live",
  ended: "Interview ended",
  error: "Something went wrong",
};

const ERROR_TITLE: Record<InterviewError["kind"], string> = {
  microphone_denied: "Microphone blocked",
  microphone_unavailable: "Microphone unavailable",
  at_capacity: "Server busy",
  busy: "Server busy",
  voice_unavailable: "Voice unavailable",
  session_expired: "Session expired",
  session_ended: "Interview already ended",
  already_connected: "Already connected elsewhere",
  connection_lost: "Connection lost",
  not_found: "Session not found",
  invalid_request: "Request refused",
  network: "Server unreachable",
  server: "Server error",
};

function asInterviewError(error: unknown): InterviewError {
  if (error instanceof InterviewError) return error;
  return new InterviewError("server", error instanceof Error ? error.message : String(error), {
    cause: error,
  });
}

function describeError(error: InterviewError, hasSession: boolean): string {
  const wait = error.retryAfterSeconds ? ` Try again in about ${error.retryAfterSeconds} seconds.` : "";
  const typing = hasSession ? " You can answer by typing meanwhile." : "";
  if (error.kind === "at_capacity") {
    return `All voice interview slots are in use right now.${wait}${typing}`;
  }
  if (error.kind === "busy") {
    return `${error.message}${wait}${typing}`;
  }
  if (error.kind === "session_expired") {
    return "This interview session has expired: its time limit passed. Please start a new interview.";
  }
  return error.message;
}

/** Errors after which the session can still take typed answers. */
const SESSION_STILL_USABLE = new Set<InterviewError["kind"]>([
  "microphone_denied",
  "microphone_unavailable",
  "at_capacity",
  "busy",
  "voice_unavailable",
  "already_connected",
  "connection_lost",
  "network",
]);

export function VoiceInterviewPageREST(props: VoiceInterviewPageRESTProps): ReactElement {
  const {
    apiBase,
    userId,
    planId,
    askName = true,
    metadata,
    voice,
    iceTransportPolicy,
    audioConstraints,
    credentials,
    title = "Voice interview",
    onPhaseChange,
    onResults,
  } = props;
  const ids = useId();
  const [phase, setPhase] = useState<Phase>("ready");
  const [error, setError] = useState<InterviewError | null>(null);
  const [name, setName] = useState(props.candidateName ?? "");
  const [turns, setTurns] = useState<Map<number, Turn>>(new Map());
  const [speaker, setSpeaker] = useState<Speaker>(null);
  const [reconnecting, setReconnecting] = useState<string | null>(null);
  const [muted, setMuted] = useState(false);
  const [draft, setDraft] = useState("");
  const [sending, setSending] = useState(false);
  // While a typed answer is retried (same Idempotency-Key): what the page says about it.
  const [answerNote, setAnswerNote] = useState<string | null>(null);
  const [results, setResults] = useState<Report | FailedResults | null>(null);
  const [printable, setPrintable] = useState<string | null>(null);
  // Set once the candidate erased the interview (DELETE): what the page then says.
  const [erased, setErased] = useState<string | null>(null);

  const sessionRef = useRef<InterviewSession | null>(null);
  const audioRef = useRef<HTMLAudioElement | null>(null);
  const speakingTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const interviewerLine = useRef(new InterviewerLine());
  const endedRef = useRef(false);
  const phaseRef = useRef<Phase>("ready");
  const mountedRef = useRef(true);
  const sectionRef = useRef<HTMLElement | null>(null);
  const statusRef = useRef<HTMLParagraphElement | null>(null);
  const endButtonRef = useRef<HTMLButtonElement | null>(null);
  // Stops polling for a background evaluation when the page goes away or the data is erased.
  const resultsAbort = useRef(new AbortController());

  const changePhase = useCallback(
    (next: Phase) => {
      phaseRef.current = next;
      setPhase(next);
      onPhaseChange?.(next);
    },
    [onPhaseChange],
  );

  // A turn already shown is replaced (a line cut by the candidate comes again, marked so).
  const addTurns = useCallback((added: Turn[]) => {
    setTurns((current) => mergeTurns(current, added));
  }, []);

  const fetchResults = useCallback(
    async (session: InterviewSession) => {
      try {
        let outcome = await session.waitForResults();
        setResults(outcome);
        onResults?.(outcome);
        // The model failed when the report was written: it is retried in the background, and
        // the report shown meanwhile says so; show the evaluation once it is in.
        while (outcome.status !== "failed" && outcome.evaluation_status === "pending_retry") {
          outcome = await session.waitForEvaluation({ signal: resultsAbort.current.signal });
          setResults(outcome);
          onResults?.(outcome);
        }
      } catch (failure) {
        if (resultsAbort.current.signal.aborted) return;
        setError(asInterviewError(failure));
      }
    },
    [onResults],
  );

  const finish = useCallback(
    (session: InterviewSession) => {
      if (endedRef.current) return;
      endedRef.current = true;
      setSpeaker(null);
      setReconnecting(null);
      // Nothing more to follow live (the results are polled): a missed `results` event must
      // not keep the stream re-requested.
      session.stopEvents();
      session.disconnectVoice();
      changePhase("ended");
      void fetchResults(session);
    },
    [changePhase, fetchResults],
  );

  const onEvent = useCallback(
    (session: InterviewSession, event: InterviewEvent) => {
      switch (event.type) {
        case "turn":
          addTurns([event.turn]);
          // The interviewer's reply is in: the answer is no longer being transcribed.
          if (event.turn.role === "interviewer") {
            setSpeaker((s) => (s === "transcribing" || s === "nothing_heard" ? null : s));
          }
          break;
        case "speaking": {
          // started/resumed: speaking; paused/interrupted: not any more (the candidate has the
          // floor); queued: until the line has played.
          const update = interviewerLine.current.on(event.state, event.seconds, Date.now());
          if (update.indicator !== "keep" || update.offInMs !== null) {
            if (speakingTimer.current !== null) clearTimeout(speakingTimer.current);
            speakingTimer.current = null;
          }
          if (update.indicator === "on") setSpeaker("interviewer");
          else if (update.indicator === "off") setSpeaker((s) => (s === "interviewer" ? null : s));
          if (update.offInMs !== null) {
            speakingTimer.current = setTimeout(
              () => setSpeaker((s) => (s === "interviewer" ? null : s)),
              update.offInMs,
            );
          }
          break;
        }
        case "candidate":
          setSpeaker(event.state === "speaking" ? "candidate" : event.state);
          break;
        case "status":
          if (event.status === "ended" || event.status === "failed") finish(session);
          else if (event.status === "expired") {
            setError(new InterviewError("session_expired", "The interview's time ran out."));
            finish(session);
          }
          break;
        case "peer":
          if (event.state === "connected") {
            setReconnecting(null);
            if (phaseRef.current === "connecting") changePhase("live");
          }
          break;
        case "reconnecting":
          setReconnecting(`Connection lost; reconnecting (attempt ${event.attempt})…`);
          break;
        case "answer-retrying":
          setAnswerNote(
            event.saved
              ? "Your answer is saved; waiting for the interviewer's reply…"
              : `Saving your answer… retrying (attempt ${event.attempt} of ${event.maxAttempts})`,
          );
          break;
        case "remote-stream":
          if (audioRef.current !== null && audioRef.current.srcObject !== event.stream) {
            audioRef.current.srcObject = event.stream;
            void audioRef.current.play().catch(() => undefined); // autoplay may need the click
          }
          break;
        case "voice-error":
          setReconnecting(null);
          setSpeaker(null);
          setError(event.error);
          if (!endedRef.current) changePhase("error");
          break;
        case "server-error":
          // A turn the server could not answer: it asks to repeat; show it, keep going.
          setError(new InterviewError("server", event.message));
          break;
        case "results":
        case "connection":
        case "interviewer":
          break;
      }
    },
    [addTurns, changePhase, finish],
  );

  // The session's listener is registered once; it calls the latest handler (props may change).
  const onEventRef = useRef(onEvent);
  onEventRef.current = onEvent;

  // Tear everything down when the component goes away.
  useEffect(() => {
    mountedRef.current = true;
    return () => {
      mountedRef.current = false;
      resultsAbort.current.abort();
      sessionRef.current?.close();
      if (speakingTimer.current !== null) clearTimeout(speakingTimer.current);
    };
  }, []);

  // Keep keyboard focus when the element holding it goes away (the start form on Start, the
  // controls on End): move it to End while that is usable, else to the status line.
  const focusWasInside = useRef(false);
  focusWasInside.current =
    typeof document !== "undefined" &&
    sectionRef.current !== null &&
    sectionRef.current.contains(document.activeElement);
  useLayoutEffect(() => {
    if (!focusWasInside.current) return;
    const active = document.activeElement;
    if (active !== null && active !== document.body && active.isConnected) return;
    const endButton = endButtonRef.current;
    if (endButton !== null && !endButton.disabled) endButton.focus();
    else statusRef.current?.focus();
  });

  const connectVoice = useCallback(
    async (session: InterviewSession) => {
      setError(null);
      changePhase("connecting");
      try {
        await session.connectVoice({
          ...(audioConstraints === undefined ? {} : { audio: audioConstraints }),
          ...(iceTransportPolicy === undefined ? {} : { iceTransportPolicy }),
        });
        if (!mountedRef.current) {
          session.close(); // unmounted while connecting: hang up what was opened
          return;
        }
        setMuted(false);
      } catch (failure) {
        const interviewError = asInterviewError(failure);
        setError(interviewError);
        changePhase("error");
      }
    },
    [audioConstraints, changePhase, iceTransportPolicy],
  );

  const start = useCallback(
    async (event?: FormEvent) => {
      event?.preventDefault();
      if (phaseRef.current === "connecting") return;
      setError(null);
      changePhase("connecting");
      let session = sessionRef.current;
      try {
        if (session === null) {
          const options = credentials === undefined ? {} : { credentials };
          session = props.session
            ? new InterviewSession(apiBase, props.session, options)
            : (
                await InterviewSession.start(
                  apiBase,
                  {
                    userId,
                    ...(planId ? { planId } : {}),
                    ...(name.trim() ? { candidateName: name.trim() } : {}),
                    ...(metadata ? { metadata } : {}),
                    ...(voice ? { voice } : {}),
                  },
                  options,
                )
              ).session;
          if (!mountedRef.current) {
            // Unmounted meanwhile: follow nothing, and end an interview nobody will see rather
            // than leave it open until it expires (one the host app started is left to it).
            if (!props.session) void session.end().catch(() => undefined);
            return;
          }
          sessionRef.current = session;
          const current = session;
          current.subscribe((e) => onEventRef.current(current, e));
          current.startEvents();
          addTurns(await current.transcript());
        }
      } catch (failure) {
        sessionRef.current?.close();
        sessionRef.current = null;
        setError(asInterviewError(failure));
        changePhase("error");
        return;
      }
      if (!mountedRef.current) return;
      await connectVoice(session);
    },
    [
      addTurns,
      apiBase,
      changePhase,
      connectVoice,
      credentials,
      metadata,
      name,
      planId,
      props.session,
      userId,
      voice,
    ],
  );

  const end = useCallback(async () => {
    const session = sessionRef.current;
    if (session === null) return;
    try {
      await session.end();
    } catch (failure) {
      const interviewError = asInterviewError(failure);
      if (interviewError.kind !== "session_ended" && interviewError.kind !== "session_expired") {
        setError(interviewError);
        return;
      }
    }
    finish(session);
  }, [finish]);

  const sendAnswer = useCallback(
    async (event: FormEvent) => {
      event.preventDefault();
      const session = sessionRef.current;
      const text = draft.trim();
      if (session === null || text === "" || sending) return;
      setSending(true);
      try {
        // Retried by the client with the answer's Idempotency-Key; after a failure the draft is
        // kept, and sending it again reuses that key: the answer is never stored twice.
        const outcome = await session.answer(text);
        setDraft("");
        if (outcome.interview_complete) finish(session);
      } catch (failure) {
        const interviewError = asInterviewError(failure);
        setError(interviewError);
        if (interviewError.kind === "session_ended" || interviewError.kind === "session_expired") {
          finish(session);
        }
      } finally {
        setSending(false);
        setAnswerNote(null);
      }
    },
    [draft, finish, sending],
  );

  const startOver = useCallback(() => {
    sessionRef.current?.close();
    sessionRef.current = null;
    endedRef.current = false;
    resultsAbort.current.abort();
    resultsAbort.current = new AbortController();
    setTurns(new Map());
    setResults(null);
    setErased(null);
    setError(null);
    setSpeaker(null);
    changePhase("ready");
  }, [changePhase]);

  const toggleMute = useCallback(() => {
    setMuted((was) => {
      sessionRef.current?.setMicrophoneEnabled(was);
      return !was;
    });
  }, []);

  const erase = useCallback(async () => {
    const session = sessionRef.current;
    if (session === null) return;
    const sure = window.confirm(
      "Delete this interview? Its transcript and its results are erased for good.",
    );
    if (!sure) return;
    try {
      resultsAbort.current.abort();
      await session.erase();
      setResults(null);
      setTurns(new Map());
      setErased("This interview was deleted: its transcript and its results are gone.");
    } catch (failure) {
      setError(asInterviewError(failure));
    }
  }, []);

  const openPrintable = useCallback(async () => {
    const session = sessionRef.current;
    if (session === null) return;
    try {
      const html = await session.printableReport();
      if (html === null) {
        setPrintable("This server does not offer a printable report.");
        return;
      }
      // The route needs the bearer token, so a plain link cannot open it: hand the fetched
      // page to a new tab as a blob URL instead.
      const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
      window.open(url, "_blank", "noopener");
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setPrintable(null);
    } catch (failure) {
      setPrintable(asInterviewError(failure).message);
    }
  }, []);

  const ordered = useMemo(() => orderedTurns(turns), [turns]);
  const session = sessionRef.current;
  const hasSession = session !== null;
  const canType = hasSession && !endedRef.current && (phase === "live" || (phase === "error" && error !== null && SESSION_STILL_USABLE.has(error.kind)));
  const canRetryVoice = hasSession && phase === "error" && error !== null && SESSION_STILL_USABLE.has(error.kind);
  const voiceLive = phase === "live";

  const speakerText =
    speaker === "interviewer"
      ? "The interviewer is speaking"
      : speaker === "candidate"
        ? "You are speaking"
        : speaker === "transcribing"
          ? "Transcribing your answer…"
          : speaker === "nothing_heard"
            ? "Nothing was heard; please answer again"
            : voiceLive && muted
              ? "Your microphone is muted"
              : voiceLive
                ? "Listening"
                : phase === "connecting"
                  ? "Connecting the microphone…"
                  : "Voice is off";

  return (
    <section className="spool-interview" aria-labelledby={`${ids}-title`} data-phase={phase} ref={sectionRef}>
      <header className="spool-header">
        <h1 id={`${ids}-title`}>{title}</h1>
        <p className="spool-phase" role="status" aria-live="polite" data-testid="phase" tabIndex={-1} ref={statusRef}>
          <span className={`spool-dot spool-dot-${phase}`} aria-hidden="true" />
          {phase === "error" && canRetryVoice ? "Voice off: you can type your answers" : PHASE_LABEL[phase]}
        </p>
      </header>

      {error !== null && (
        <div className="spool-error" role="alert" data-testid="error" data-error-kind={error.kind}>
          <strong>{ERROR_TITLE[error.kind]}.</strong> {describeError(error, hasSession && !endedRef.current)}
        </div>
      )}
      {reconnecting !== null && (
        <p className="spool-notice" role="status" aria-live="polite">
          {reconnecting}
        </p>
      )}

      {phase === "error" && !canRetryVoice && (
        <button type="button" className="spool-primary" onClick={startOver}>
          Start a new interview
        </button>
      )}

      {phase === "ready" && (
        <form className="spool-start" onSubmit={(e) => void start(e)}>
          {askName && !props.session && (
            <label htmlFor={`${ids}-name`}>
              Your name <span className="spool-optional">(optional)</span>
              <input
                id={`${ids}-name`}
                value={name}
                onChange={(e) => setName(e.target.value)}
                autoComplete="name"
                maxLength={200}
              />
            </label>
          )}
          <p className="spool-hint">
            The interviewer speaks first. Answer out loud; a short silence ends your answer. Your
            browser will ask for the microphone.
          </p>
          <button type="submit" className="spool-primary">
            Start interview
          </button>
        </form>
      )}

      {(phase === "connecting" || phase === "live" || canRetryVoice) && (
        <div className="spool-controls" role="group" aria-label="Interview controls">
          {/* Not a live region: announcing every change would talk over the interviewer. */}
          <p className="spool-speaking" aria-live="off" data-testid="speaking" data-speaker={speaker ?? "none"}>
            <span className={`spool-wave ${speaker ? "spool-wave-on" : ""}`} aria-hidden="true" />
            {speakerText}
          </p>
          {voiceLive && (
            // A toggle: a fixed name, its state in aria-pressed (and shown by the CSS).
            <button type="button" className="spool-mute" aria-pressed={muted} onClick={toggleMute}>
              Mute microphone
            </button>
          )}
          {canRetryVoice && session !== null && (
            <button type="button" onClick={() => void connectVoice(session)}>
              Try voice again
            </button>
          )}
          <button
            type="button"
            className="spool-danger"
            ref={endButtonRef}
            onClick={() => void end()}
            disabled={phase === "connecting" && !hasSession}
          >
            End interview
          </button>
        </div>
      )}

      {/* The interviewer's voice. Kept in the page (not display:none) so it plays and its level
          can be measured. */}
      <audio ref={audioRef} autoPlay data-testid="interviewer-audio" aria-label="Interviewer audio" />

      {ordered.length > 0 && (
        <section className="spool-transcript" aria-labelledby={`${ids}-transcript`}>
          <h2 id={`${ids}-transcript`}>Transcript</h2>
          <ol aria-live="polite" aria-relevant="additions" data-testid="transcript">
            {ordered.map((turn) => (
              <TranscriptItem key={turn.index} turn={turn} />
            ))}
          </ol>
        </section>
      )}

      {canType && (
        <form className="spool-answer" onSubmit={(e) => void sendAnswer(e)}>
          <label htmlFor={`${ids}-answer`}>Type your answer instead</label>
          <textarea
            id={`${ids}-answer`}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            rows={3}
            maxLength={4000}
            onKeyDown={(e) => {
              // Ctrl/Cmd+Enter sends; plain Enter makes a new line.
              if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void sendAnswer(e);
            }}
          />
          <button type="submit" disabled={sending || draft.trim() === ""}>
            {sending ? "Sending…" : "Send answer"}
          </button>
          {answerNote !== null && (
            <p className="spool-notice" role="status" aria-live="polite" data-testid="answer-status">
              {answerNote}
            </p>
          )}
        </form>
      )}

      {phase === "ended" && erased === null && (
        <ResultsView
          results={results}
          onPrintable={() => void openPrintable()}
          printableNote={printable}
          onErase={() => void erase()}
        />
      )}
      {erased !== null && (
        <p role="status" data-testid="erased">
          {erased}
        </p>
      )}
    </section>
  );
}

// ---------------------------------------------------------------------------------------------
// Transcript

/** One turn. A line the candidate cut shows the words played, "…" and "(interrupted)"; a
 * withdrawn line is struck through with "(withdrawn)": kept for the record, not said. */
function TranscriptItem({ turn }: { turn: Turn }): ReactElement {
  const view = turnView(turn);
  const className = [
    "spool-turn",
    `spool-turn-${turn.role}`,
    ...(view.interruption === null ? [] : [`spool-turn-${view.interruption.replace("_", "-")}`]),
  ].join(" ");
  const text =
    view.interruption === "withdrawn" ? (
      <del className="spool-text">{view.text}</del>
    ) : (
      <span className="spool-text">{view.text}</span>
    );
  return (
    <li
      className={className}
      data-role={turn.role}
      data-source={turn.source}
      data-kind={turn.kind}
      data-interruption={view.interruption ?? "none"}
      {...(view.description === null ? {} : { title: view.description })}
    >
      <span className="spool-who">{turn.role === "interviewer" ? "Interviewer" : "You"}</span>
      <span className="spool-line">
        {text}
        {view.marker !== null && (
          <>
            {" "}
            <em className="spool-interruption" data-testid="interruption">
              {view.marker}
            </em>
          </>
        )}
      </span>
    </li>
  );
}

// ---------------------------------------------------------------------------------------------
// Results

/** m:ss into an answer, for a quote's time. */
function clock(value: number): string {
  const whole = Math.max(0, Math.floor(value));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function seconds(value: number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  if (value >= 90) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  return `${value.toFixed(1)} s`;
}

function plain(value: number | null | undefined, digits = 0): string {
  return value === null || value === undefined ? "—" : value.toFixed(digits);
}

function ResultsView(props: {
  results: Report | FailedResults | null;
  onPrintable: () => void;
  printableNote: string | null;
  onErase: () => void;
}): ReactElement {
  const { results } = props;
  const headingId = useId();
  if (results === null) {
    return (
      <section className="spool-results" aria-labelledby={headingId} aria-busy="true">
        <h2 id={headingId}>Results</h2>
        <p role="status" aria-live="polite">
          Preparing the results…
        </p>
      </section>
    );
  }
  if (results.status === "failed") {
    return (
      <section className="spool-results" aria-labelledby={headingId} data-testid="results">
        <h2 id={headingId}>Results</h2>
        <p role="alert">The results could not be computed: {results.reason ?? "unknown reason"}.</p>
        <button type="button" onClick={props.onErase}>
          Delete this interview
        </button>
      </section>
    );
  }
  const m = results.metrics;
  return (
    <section className="spool-results" aria-labelledby={headingId} data-testid="results">
      <h2 id={headingId}>Results</h2>
      <p className="spool-meta">
        {results.plan.title} · {results.candidate_name ?? results.user_id}
        {results.end_reason ? ` · ended: ${results.end_reason.replace(/_/g, " ")}` : ""}
      </p>
      <button type="button" onClick={props.onPrintable}>
        Printable report
      </button>{" "}
      <button type="button" onClick={props.onErase}>
        Delete this interview
      </button>
      {props.printableNote !== null && <p role="status">{props.printableNote}</p>}

      <h3>Metrics</h3>
      <dl className="spool-metrics" data-testid="metrics">
        <dt>Duration</dt>
        <dd>{seconds(m.duration_seconds)}</dd>
        <dt>Questions covered</dt>
        <dd>
          {m.questions_covered} of {m.questions_total}
        </dd>
        <dt>Answers</dt>
        <dd>{m.candidate_turns}</dd>
        <dt>Words</dt>
        <dd>{m.answer_words}</dd>
        <dt>Speaking time</dt>
        <dd>{seconds(m.speaking_seconds)}</dd>
        <dt>Words per minute</dt>
        <dd>{plain(m.words_per_minute)}</dd>
        <dt>Mean response delay</dt>
        <dd>{seconds(m.mean_response_delay_seconds)}</dd>
        {m.talk_ratio !== undefined && m.talk_ratio !== null && (
          <>
            <dt>Candidate share of the words</dt>
            <dd>{Math.round(m.talk_ratio * 100)}%</dd>
          </>
        )}
      </dl>

      <h3>Evaluation</h3>
      {results.evaluation ? (
        <EvaluationView evaluation={results.evaluation} />
      ) : (
        <p className="spool-note" data-testid="evaluation-note">
          {results.evaluation_note ?? "No evaluation for this interview."}
          {results.evaluation_status === "pending_retry" &&
            " It is being tried again; this page shows it when it is ready."}
        </p>
      )}

      <h3>Questions</h3>
      <ol className="spool-questions">
        {results.questions.map((q) => (
          <li key={q.index}>
            <p className="spool-question">
              {q.text} <span className="spool-tag">{q.competency}</span>{" "}
              <span className="spool-tag">{q.answered ? "answered" : q.asked ? "asked" : "not asked"}</span>
            </p>
            {q.follow_ups_asked.length > 0 && (
              <p className="spool-followups">Follow-ups: {q.follow_ups_asked.join(" · ")}</p>
            )}
            {q.answers.map((a) => (
              <blockquote key={a.turn_index} className="spool-answer-quote">
                <p>{a.text}</p>
                <footer>
                  {a.source} · {a.words} words
                  {a.speaking_seconds !== null ? ` · spoke ${seconds(a.speaking_seconds)}` : ""}
                  {a.response_delay_seconds !== null ? ` · answered after ${seconds(a.response_delay_seconds)}` : ""}
                  {a.transcription === "live_only" || a.transcription === "live"
                    ? " · live transcript only (less exact)"
                    : ""}
                </footer>
              </blockquote>
            ))}
          </li>
        ))}
      </ol>
    </section>
  );
}

const RECOMMENDATION_LABEL: Record<Evaluation["recommendation"], string> = {
  strong_yes: "Strong yes",
  yes: "Yes",
  no: "No",
  strong_no: "Strong no",
};

function EvaluationView({ evaluation }: { evaluation: Evaluation }): ReactElement {
  const { scale } = evaluation;
  return (
    <div className="spool-evaluation" data-testid="evaluation">
      <p className="spool-recommendation">
        <strong>Recommendation:</strong>{" "}
        {RECOMMENDATION_LABEL[evaluation.recommendation] ?? evaluation.recommendation}{" "}
        <span className="spool-tag">{evaluation.confidence} confidence</span>
      </p>
      <p>{evaluation.summary}</p>
      <table className="spool-competencies">
        <caption>
          Competencies (scale {scale.min}–{scale.max})
        </caption>
        <thead>
          <tr>
            <th scope="col">Competency</th>
            <th scope="col">Score</th>
            <th scope="col">Justification and evidence</th>
          </tr>
        </thead>
        <tbody>
          {evaluation.competencies.map((c) => (
            <tr key={c.id}>
              <th scope="row">{c.name}</th>
              <td>{c.assessed && c.score !== null ? `${c.score} / ${scale.max}` : "not assessed"}</td>
              <td>
                <p>{c.justification}</p>
                {c.evidence.length > 0 && (
                  <ul aria-label={`Evidence for ${c.name}`}>
                    {c.evidence.map((e, j) => (
                      <li key={j}>
                        <q>{e.quote}</q>{" "}
                        <span className="spool-tag">
                          answer {e.turn_index}
                          {e.at_seconds != null ? ` · at ${clock(e.at_seconds)}` : ""}
                        </span>
                      </li>
                    ))}
                  </ul>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {evaluation.strengths.length > 0 && (
        <>
          <h4>Strengths</h4>
          <ul>
            {evaluation.strengths.map((s, i) => (
              <li key={i}>{s}</li>
            ))}
          </ul>
        </>
      )}
      {evaluation.concerns.length > 0 && (
        <>
          <h4>Concerns</h4>
          <ul>
            {evaluation.concerns.map((s, i) => (
              <li key={i}>{s}</li>
            ))}
          </ul>
        </>
      )}
      {evaluation.flagged_quotes && evaluation.flagged_quotes.length > 0 && (
        <>
          <h4>Quotes the model gave that are not in the answers</h4>
          <ul>
            {evaluation.flagged_quotes.map((f, i) => (
              <li key={i}>
                <q>{f.quote}</q> ({f.competency}): {f.reason}
              </li>
            ))}
          </ul>
        </>
      )}
      <p className="spool-note">Evaluated by {evaluation.model}. A model's judgement: review the evidence.</p>
    </div>
  );
}

export default VoiceInterviewPageREST;
