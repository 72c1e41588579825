"""Fixtures for the browser tests: the built client, a server, Chromium, pages, bots.

The helpers behind them (server subprocess, bot thread, proxy, screenshots) live in
webxr_harness.py so that test modules can import them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright
from webxr_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DIST_INDEX,
    NODE_MODULES,
    BotPool,
    PageErrors,
    ServerProcess,
    npm,
    running_server,
)


@pytest.fixture(scope="session")
def webxr_dist() -> Path:
    """The built client; installs and builds it when missing, with a clear failure."""
    if not NODE_MODULES.is_dir():
        npm("ci", "--no-audit", "--no-fund")
    if not DIST_INDEX.exists():
        npm("run", "build")
    return DIST_INDEX.parent


@pytest.fixture(scope="module")
def mw_server(
    webxr_dist: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("mw")) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` to run these")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open pages in fresh contexts; every page records its uncaught errors."""
    contexts: list[Any] = []

    def open_page(url: str, *, init_scripts: tuple[str | Path, ...] = (), **ctx: Any) -> Any:
        ctx.setdefault("viewport", {"width": 1280, "height": 720})
        context = browser.new_context(**ctx)
        contexts.append(context)
        for script in init_scripts:
            if isinstance(script, Path):
                context.add_init_script(path=str(script))
            else:
                context.add_init_script(script=script)
        page = context.new_page()
        page.errors = PageErrors()
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.requested = []  # every URL the page fetched, to check nothing leaves the host
        page.on("request", lambda request: page.requested.append(request.url))
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def bots() -> Iterator[BotPool]:
    pool = BotPool()
    try:
        yield pool
    finally:
        pool.close()
