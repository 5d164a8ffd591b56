"""Who may act on an interview session: the bearer token issued with it, checked on every call."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from interview.store import SessionRow, Store

if TYPE_CHECKING:
    from interview.sessions import InterviewService


def hash_token(token: str) -> str:
    # Only the hash is stored, so a database leak does not hand out live session tokens.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A new session token, and the hash of it to store."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


class SessionNotFound(LookupError):
    """Unknown session or wrong token: deliberately indistinguishable."""


class SessionAccess:
    def __init__(self, store: Store, sessions: InterviewService) -> None:
        self.store = store
        self.sessions = sessions

    async def authenticate(self, session_id: str, token: str) -> SessionRow:
        """The session `token` opens, as it stands now (expired if its time ran out);
        SessionNotFound for an unknown session and a wrong token alike."""
        row = await self.store.get_session(session_id)
        # Compare against a dummy hash when the session is unknown so both paths cost the same.
        expected = row.token_hash if row is not None else hash_token(secrets.token_hex(8))
        if not hmac.compare_digest(expected, hash_token(token)) or row is None:
            raise SessionNotFound(session_id)
        return await self.sessions.refresh(row)
