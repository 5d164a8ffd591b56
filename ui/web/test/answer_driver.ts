// The client as a program, for tests/web/test_answer_retries.py (real server, real HTTP): start
// a session at the API base given first, send each further argument as a typed answer in turn,
// and print one JSON line per step. Exits 1 after printing the error of an answer refused.
//
//   node answer_driver.mjs http://127.0.0.1:8000/api/interview "First answer" "Second answer"

import { InterviewError, InterviewSession } from "../src/client";

const print = (line: object): void => console.log(JSON.stringify(line));

const [apiBase, ...answers] = process.argv.slice(2);
if (apiBase === undefined) throw new Error("usage: answer_driver.mjs API_BASE ANSWER...");

// Short retry delays: the test's proxy fails on purpose, and waits are the server's to ask for.
const { session, started } = await InterviewSession.start(
  apiBase,
  { userId: "answer-driver" },
  { answerRetry: { delayMs: 50 } },
);
print({ started: { session_id: started.session_id, token: started.token } });
session.subscribe((event) => {
  if (event.type === "answer-retrying") {
    print({ retrying: { attempt: event.attempt, delay_ms: event.delayMs, saved: event.saved } });
  }
});
for (const text of answers) {
  try {
    const outcome = await session.answer(text);
    print({ answered: { candidate_turn: outcome.candidate_turn, interviewer_turn: outcome.interviewer_turn } });
  } catch (error) {
    if (!(error instanceof InterviewError)) throw error;
    print({ error: { kind: error.kind, status: error.status ?? null, code: error.code ?? null, message: error.message } });
    process.exit(1);
  }
}
