"""Session tokens: each opens its own session only, and only its hash is stored."""

from collections.abc import AsyncIterator

import pytest

from interview.access import SessionNotFound, hash_token
from interview.config import Settings
from interview.runtime import Runtime


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    parts = Runtime.build(Settings(database_url=database_url, voice_enabled=False))
    await parts.store.migrate()
    yield parts
    await parts.store.dispose()


async def test_tokens_authenticate_only_their_session(runtime: Runtime):
    service, access = runtime.service, runtime.access
    a = await service.start("a")
    b = await service.start("b")
    assert (await access.authenticate(a.session.id, a.token)).id == a.session.id
    for session_id, token in [
        (a.session.id, b.token),
        (a.session.id, a.token + "x"),
        (a.session.id, ""),
        ("no-such-session", a.token),
    ]:
        with pytest.raises(SessionNotFound):
            await access.authenticate(session_id, token)
    assert a.session.id != b.session.id and len(a.session.id) >= 24
    # Only a hash of the token is stored.
    stored = await runtime.store.get_session(a.session.id)
    assert stored is not None and a.token not in stored.token_hash
    assert stored.token_hash == hash_token(a.token)
