"""What a person sees when things go wrong, and that the client recovers by itself.

A rejected token, a server restart and a dropped connection must each end in a clear
message on screen and then a working connection again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webxr_harness import (
    ServerProcess,
    TcpProxy,
    axe_violations,
    hook,
    running_server,
    sign_in,
    wait_connected,
)

pytestmark = pytest.mark.browser
FOCUSED = "() => document.activeElement.id || document.activeElement.textContent"


@pytest.fixture
def own_server(webxr_dist: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server this test may stop and restart without disturbing the others."""
    with running_server(tmp_path) as server:
        yield server


def status_text(page) -> str:
    return str(page.locator("#status").inner_text())


def test_a_bad_token_says_so_and_signing_in_again_works(mw_server: ServerProcess, new_page):
    page = new_page(mw_server.http_url)
    sign_in(page, token="this-is-not-a-token")
    message = page.locator("#sign-in-message")
    message.wait_for(state="visible")
    assert "token was rejected" in message.inner_text()
    assert page.locator("#sign-in").is_visible()
    assert hook(page, "m.lastClose.code") == 4001
    assert "token was rejected" in status_text(page)

    sign_in(page, "patient", "")
    wait_connected(page)
    assert page.locator("#world").is_visible()
    assert not page.locator("#sign-in").is_visible()
    assert page.errors == []


def test_a_server_restart_shows_a_message_and_reconnects(own_server: ServerProcess, new_page):
    page = new_page(own_server.http_url)
    sign_in(page, "admin", "Ada Admin")
    wait_connected(page)
    first_session = hook(page, "m.session")

    own_server.stop()
    page.wait_for_function("() => !__metaworld.connected")
    page.wait_for_function(
        "() => /restarting|dropped/.test(document.querySelector('#status').textContent)"
    )
    assert "Retrying in" in status_text(page)

    own_server.start()
    wait_connected(page, timeout_s=30)
    # The restarted server has no memory of the old session, so a new one begins.
    assert hook(page, "m.session") != first_session
    assert status_text(page).startswith("Connected")
    assert page.errors == []


def test_a_dropped_connection_resumes_the_same_session(mw_server: ServerProcess, new_page):
    proxy = TcpProxy(mw_server.ws_port)
    try:
        page = new_page(f"{mw_server.http_url}?ws=ws://127.0.0.1:{proxy.port}/")
        sign_in(page, "researcher", "Rae Researcher")
        me = wait_connected(page)
        session = hook(page, "m.session")

        proxy.cut()
        page.wait_for_function(
            "() => document.querySelector('#status').textContent.includes('dropped')"
        )
        assert hook(page, "m.lastClose.code") == 1006

        wait_connected(page, timeout_s=20)
        assert hook(page, "m.session") == session
        assert hook(page, "m.avatarId") == me["id"]
        page.wait_for_function(
            "() => document.querySelector('#chat-log').textContent.includes('session resumed')"
        )
        assert page.errors == []
    finally:
        proxy.close()


def test_the_2d_interface_has_no_serious_accessibility_problems(mw_server: ServerProcess, new_page):
    page = new_page(mw_server.http_url)
    assert axe_violations(page) == []  # the sign-in form

    sign_in(page, "clinician", "Dr Axe")
    wait_connected(page)
    page.fill("#chat-input", "checking contrast")
    page.press("#chat-input", "Enter")
    page.wait_for_function("() => __metaworld.chat.length > 0")
    assert axe_violations(page) == []  # the world view with its tool panels

    # Every control can be reached from the keyboard, and the scene takes keys.
    page.focus("#scene")
    before = hook(page, "m.self")
    page.keyboard.down("KeyW")
    page.wait_for_timeout(400)
    page.keyboard.up("KeyW")
    after = hook(page, "m.self")
    assert (before["x"], before["z"]) != (after["x"], after["z"])
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate(FOCUSED))
    assert {"chat-input", "jump-room", "turn-mode", "reduced-motion"} <= reached


def test_reduced_motion_follows_the_system_setting(mw_server: ServerProcess, new_page):
    calm = new_page(mw_server.http_url, reduced_motion="reduce")
    sign_in(calm, "patient")
    wait_connected(calm)
    assert calm.locator("#reduced-motion").is_checked()
    busy = new_page(mw_server.http_url, reduced_motion="no-preference")
    sign_in(busy, "patient")
    wait_connected(busy)
    assert not busy.locator("#reduced-motion").is_checked()
