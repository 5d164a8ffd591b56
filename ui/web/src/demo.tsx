// The /demo page: the component against the API of the same origin.
//
// Query parameters (all optional): plan, user, name, relay=1 (media only through TURN).
// A session created elsewhere can be joined with #session=<id>&token=<token> (the fragment is
// never sent to the server, so the token stays out of its logs).

import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import type { SessionCredentials } from "./client";
import { VoiceInterviewPageREST } from "./VoiceInterviewPageREST";
import "./demo.css";

const query = new URLSearchParams(window.location.search);
const fragment = new URLSearchParams(window.location.hash.slice(1));
// The page is served at <prefix>/demo/, the API at <prefix>/api/interview.
const apiBase = new URL("../api/interview", window.location.href).href.replace(/\/$/, "");

const sessionId = fragment.get("session");
const token = fragment.get("token");
const session: SessionCredentials | undefined =
  sessionId && token ? { sessionId, token } : undefined;

function demoUserId(): string {
  const given = query.get("user");
  if (given) return given;
  // A stable, random id per browser, so sessions of one tester can be told apart.
  const key = "spool-demo-user";
  let id = window.localStorage.getItem(key);
  if (!id) {
    id = `demo-${crypto.randomUUID().slice(0, 8)}`;
    window.localStorage.setItem(key, id);
  }
  return id;
}

const container = document.getElementById("root");
if (container === null) throw new Error("#root is missing from the demo page");
createRoot(container).render(
  <StrictMode>
    <main className="spool-demo">
      <VoiceInterviewPageREST
        apiBase={apiBase}
        userId={demoUserId()}
        {...(query.get("plan") ? { planId: query.get("plan") as string } : {})}
        {...(query.get("name") ? { candidateName: query.get("name") as string } : {})}
        {...(query.get("voice") ? { voice: query.get("voice") as string } : {})}
        {...(session ? { session } : {})}
        {...(query.get("relay") === "1" ? { iceTransportPolicy: "relay" as const } : {})}
        title="Spool Interview: voice demo"
      />
    </main>
  </StrictMode>,
);
