// What the page shows of the transcript and of the interviewer's speaking, as pure functions of
// the API's turns and events (no React here, so test/transcript.test.ts covers them in Node).

import type { InterviewEvent, Turn } from "./client";

export type Interruption = NonNullable<Turn["interruption"]>;
export type SpeakingState = Extract<InterviewEvent, { type: "speaking" }>["state"];

/**
 * The transcript with `added` merged in, by index. A turn whose index is already there REPLACES
 * it: an interviewer line cut by the candidate is committed whole first, then published again
 * with its interruption set; the same turns also arrive from /transcript and as events.
 */
export function mergeTurns(current: ReadonlyMap<number, Turn>, added: readonly Turn[]): Map<number, Turn> {
  const next = new Map(current);
  for (const turn of added) next.set(turn.index, turn);
  return next;
}

/** The transcript in order. */
export function orderedTurns(turns: ReadonlyMap<number, Turn>): Turn[] {
  return [...turns.values()].sort((a, b) => a.index - b.index);
}

export interface TurnView {
  /** The words shown: for a cut line, those that were played, then "…". */
  text: string;
  /** "(interrupted)", "(withdrawn)", or null for a line heard whole and for answers. */
  marker: string | null;
  /** For screen readers and tooltips: what happened to the line. */
  description: string | null;
  interruption: Interruption | null;
}

const MARKER: Record<Interruption, string> = {
  barge_in: "(interrupted)",
  withdrawn: "(withdrawn)",
};

const DESCRIPTION: Record<Interruption, string> = {
  barge_in: "You spoke over the interviewer; this line was cut here.",
  withdrawn: "You had not finished your answer: the interviewer withdrew this line.",
};

/** How one turn reads in the transcript. */
export function turnView(turn: Turn): TurnView {
  const interruption = turn.interruption ?? null;
  if (interruption === null) return { text: turn.text, marker: null, description: null, interruption };
  const played = turn.text.trim();
  // A line cut mid-sentence trails off; one cut before a word was played shows none.
  const text = interruption === "barge_in" ? (played === "" ? "…" : `${played.replace(/[\s,;:.…—-]+$/u, "")}…`) : played;
  return { text, marker: MARKER[interruption], description: DESCRIPTION[interruption], interruption };
}

/** What the speaking indicator does after one `speaking` event. */
export interface SpeakingUpdate {
  /** "on": the interviewer is speaking; "off": it is not (it holds, or was cut); "keep": as is. */
  indicator: "on" | "off" | "keep";
  /** Turn the indicator off after this many ms (the line's audio plays until then); null: no timer. */
  offInMs: number | null;
}

/**
 * The interviewer's line as the page hears it, from its `speaking` events: started and resumed
 * (after a backchannel) speak; paused and interrupted stop at once; queued (the whole line is on
 * its way) stops once the line has played: its start, plus its length, plus any time it held.
 */
export class InterviewerLine {
  private startedAt = 0;
  private pausedAt: number | null = null;
  private seconds: number | null = null;

  /** The event's effect at `now` (ms, as Date.now()). An unknown (newer) state changes nothing. */
  on(state: SpeakingState, seconds: number | null | undefined, now: number): SpeakingUpdate {
    switch (state) {
      case "started":
        this.startedAt = now;
        this.pausedAt = null;
        this.seconds = null;
        return { indicator: "on", offInMs: null };
      case "resumed":
        // The line held while the candidate spoke: it ends that much later.
        if (this.pausedAt !== null) this.startedAt += Math.max(0, now - this.pausedAt);
        this.pausedAt = null;
        return { indicator: "on", offInMs: this.left(now) };
      case "paused":
        this.pausedAt ??= now;
        return { indicator: "off", offInMs: null };
      case "interrupted":
        this.pausedAt = null;
        this.seconds = null;
        return { indicator: "off", offInMs: null };
      case "queued":
        if (typeof seconds !== "number") return { indicator: "keep", offInMs: null };
        this.seconds = seconds;
        return { indicator: "keep", offInMs: this.pausedAt === null ? this.left(now) : null };
      default:
        return { indicator: "keep", offInMs: null };
    }
  }

  private left(now: number): number | null {
    return this.seconds === null ? null : Math.max(0, this.startedAt + this.seconds * 1000 - now);
  }
}
