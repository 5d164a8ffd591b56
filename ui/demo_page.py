"""The /demo page: the React component (ui/web) against the API of the same origin.

`npm run build` in ui/web (or `make web`) writes ui/web/dist: index.html and assets/. It is build
output, never committed; when it is missing /demo says how to build it instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

DIST_DIR = Path(__file__).resolve().parent / "web" / "dist"

# Everything the page needs comes from this server: a CSP makes that a rule the browser
# enforces, not a habit. WebRTC media is not governed by it; the ICE servers come from the API.
# Inline styles are allowed for the printable report, which opens as a blob: page and so
# inherits this policy; scripts stay 'self' only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>The demo page is not built yet</h1>
<p>The React demo is compiled from <code>ui/web</code>. Build it with:</p>
<pre>make web</pre>
<p>or, by hand: <code>cd ui/web &amp;&amp; npm ci &amp;&amp; npm run build</code>. Then reload.</p>
<p>The API itself works without it: <a href="../docs">API docs</a>.</p>
</body></html>
"""


class _DistFiles(StaticFiles):
    """Static files that answer 404 (not 500) while the build output does not exist."""

    async def check_config(self) -> None:
        # Starlette raises (a 500) for a missing directory; a missing file lookup is a 404.
        if self.directory is not None and await anyio.to_thread.run_sync(
            os.path.isdir, self.directory
        ):
            await super().check_config()


def mount_demo(app: FastAPI, path: str = "/demo", dist: Path = DIST_DIR) -> None:
    """Serve the demo page at `path`/ and its assets at `path`/assets/."""

    @app.get(path, include_in_schema=False)
    async def demo_redirect() -> Response:
        # The page uses relative URLs (assets/, ../api/interview): it must end in a slash.
        # A relative Location keeps any prefix a proxy put in front of the app.
        return RedirectResponse(f"{path.rsplit('/', 1)[-1]}/", status_code=307)

    # A plain def: FastAPI runs it in a worker thread, so the file check does not block the loop.
    @app.get(f"{path}/", include_in_schema=False)
    def demo_index() -> Response:
        index = dist / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT_PAGE, status_code=503, headers={"Retry-After": "60"})
        return FileResponse(
            index,
            media_type="text/html",
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    app.mount(f"{path}/assets", _DistFiles(directory=dist / "assets", check_dir=False))
