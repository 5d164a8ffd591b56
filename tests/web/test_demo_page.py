"""/demo without a real server: the redirect, the page and its CSP, assets, and a clear page
(not a 500) when ui/web has not been built."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from ui.demo_page import mount_demo


def client_for(dist: Path) -> httpx.AsyncClient:
    app = FastAPI()
    mount_demo(app, dist=dist)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_an_unbuilt_demo_says_how_to_build_it(tmp_path: Path):
    async with client_for(tmp_path / "dist") as client:  # dist does not exist
        page = await client.get("/demo/")
        assert page.status_code == 503
        assert "make web" in page.text and "npm run build" in page.text
        assert (await client.get("/demo/assets/demo.js")).status_code == 404


async def test_a_built_demo_is_served_with_its_assets(tmp_path: Path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>demo</title>")
    (dist / "assets" / "demo.js").write_text("console.log('demo')")
    (tmp_path / "secret.txt").write_text("not for the web")
    async with client_for(dist) as client:
        redirect = await client.get("/demo")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == "demo/"  # relative: keeps a proxy's path prefix

        page = await client.get("/demo/")
        assert page.status_code == 200 and "<title>demo</title>" in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp
        assert (await client.get("/demo/assets/demo.js")).text == "console.log('demo')"
        assert (await client.get("/demo/assets/../../secret.txt")).status_code == 404
