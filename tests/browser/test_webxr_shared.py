"""Two browser pages and an SDK bot share the lobby: they see each other and chat."""

from __future__ import annotations

from typing import Any

import pytest
from webxr_harness import (
    BotPool,
    ServerProcess,
    hook,
    screenshot_checked,
    sign_in,
    wait_connected,
)

pytestmark = pytest.mark.browser


def head_of(client: Any) -> list[float]:
    return list(client.pose[0][:3].tolist())


def test_two_pages_and_a_bot_see_each_other_and_chat(
    mw_server: ServerProcess, new_page, bots: BotPool
) -> None:
    alice = new_page(mw_server.http_url)
    sign_in(alice, "clinician", "Dr Alice")
    a = wait_connected(alice)
    bob = new_page(mw_server.http_url)
    sign_in(bob, "trainee", "Bob Trainee")
    b = wait_connected(bob)
    bot = bots.connect(mw_server.ws_url, mw_server.dev_token("therapist", "Bot Therapist"))
    assert a["room"] == b["room"] == bots.read(lambda: bot.room) == "lobby"

    # Put the bot two metres in front of Alice, so her screenshot shows it.
    me = hook(alice, "m.self")
    bots.run(bot.move_to, me["x"], me["z"] - 2.0)
    bots.wait_for(bot, lambda c: any(p.reason == "teleport" for p in c.placements))

    # Everyone sees everyone else.
    bot_id = bots.read(lambda: bot.avatar_id)
    alice.wait_for_function(
        f"() => {{ const v = __metaworld.avatars; return v[{b['id']}] && v[{bot_id}]; }}"
    )
    bob.wait_for_function(
        f"() => {{ const v = __metaworld.avatars; return v[{a['id']}] && v[{bot_id}]; }}"
    )
    bots.wait_for(bot, lambda c: {a["id"], b["id"]} <= set(c.view))
    seen = hook(alice, "m.avatars")
    assert seen[str(bot_id)]["role"] == "therapist"
    assert seen[str(bot_id)]["label"] == "Bot Therapist"
    assert seen[str(b["id"])]["label"] == "Bob Trainee"
    # Alice draws the bot where the server put it (millimetre quantization, 1 cm slack).
    bot_head = bots.read(head_of, bot)
    alice.wait_for_function(
        f"() => Math.abs(__metaworld.avatars[{bot_id}].position[2] - {bot_head[2]}) < 0.01"
    )
    assert abs(hook(alice, f"m.avatars[{bot_id}].position[0]") - bot_head[0]) < 0.01

    # Chat goes both ways: page -> page and bot, bot -> pages.
    alice.fill("#chat-input", "Hello from Alice")
    alice.press("#chat-input", "Enter")
    bots.run(bot.chat, "Hello from the bot")
    bob.fill("#chat-input", "Hello from Bob")
    bob.click("#chat-form button[type=submit]")
    for page in (alice, bob):
        page.wait_for_function(
            "() => ['Hello from Alice', 'Hello from the bot', 'Hello from Bob']"
            ".every(t => __metaworld.chat.some(m => m.text === t))"
        )
    bots.wait_for(
        bot, lambda c: {"Hello from Alice", "Hello from Bob"} <= {m.text for m in c.chat_log}
    )
    assert alice.locator("#chat-log").inner_text().count("Hello from") == 3
    labels = {m["text"]: m["label"] for m in hook(bob, "m.chat")}
    assert labels["Hello from the bot"] == "Bot Therapist"

    # Presence lists name everyone in the room.
    alice.wait_for_function("() => __metaworld.presence.length >= 3")
    people = alice.locator("#people").inner_text()
    assert "Bob Trainee" in people
    assert "Bot Therapist" in people

    screenshot_checked(alice, "shared-alice")
    screenshot_checked(bob, "shared-bob")
    assert alice.errors == [] and bob.errors == []
    # Everything the app loaded came from the server that served it (no CDN, no fonts).
    foreign = [u for u in alice.requested if not u.startswith((mw_server.http_url, "data:"))]
    assert foreign == []


def test_teleport_doors_and_the_room_menu_move_a_desktop_page(
    mw_server: ServerProcess, new_page, bots: BotPool
) -> None:
    page = new_page(mw_server.http_url)
    sign_in(page, "clinician", "Dr Walker")
    wait_connected(page)

    # Clicking the floor in front of us teleports there (the view looks slightly down).
    before = hook(page, "m.self")
    epoch = hook(page, "m.epoch")
    box = page.locator("#scene").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.9)
    page.wait_for_function(f"() => __metaworld.epoch > {epoch}")
    after = hook(page, "m.self")
    assert after["z"] < before["z"] - 0.5, (before, after)  # moved forward (towards -z)

    # A door button: too far away, so the client teleports next to it, then goes through.
    page.click("#doors button:has-text('Waiting room')")
    page.wait_for_function("() => __metaworld.room === 'waiting'")
    assert "Waiting room" in page.locator("#room-name").inner_text()
    assert "Waiting room" in page.locator("#status").inner_text()

    # A bot in the waiting room comes into view; the lobby's people are gone from it.
    bot = bots.connect(mw_server.ws_url, mw_server.dev_token("therapist", "Waiting Bot"))
    bots.run(bot.join_room, "waiting")
    bot_id = bots.read(lambda: bot.avatar_id)
    page.wait_for_function(f"() => __metaworld.avatars[{bot_id}] !== undefined")

    # The room menu: a patient-free staff room this clinician may enter.
    page.select_option("#jump-room", "staff")
    page.click("#jump-form button[type=submit]")
    page.wait_for_function("() => __metaworld.room === 'staff'")
    page.wait_for_function(f"() => __metaworld.avatars[{bot_id}] === undefined")

    # A room the role may not enter answers with a readable error.
    bots.run(bot.join_room, "staff")
    patient = new_page(mw_server.http_url)
    sign_in(patient, "patient")
    wait_connected(patient)
    patient.select_option("#jump-room", "staff")
    patient.click("#jump-form button[type=submit]")
    patient.wait_for_function("() => __metaworld.lastError?.code === 'not_allowed'")
    assert "may not enter" in patient.locator("#hint").inner_text()
    assert page.errors == [] and patient.errors == []
