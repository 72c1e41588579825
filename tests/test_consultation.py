"""The consultation story in the world: consent decides, the ledger remembers."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy
import trio

import metaworld_sdk
from metaworld import protocol
from metaworld.consent import InProcessConsentService
from metaworld.demo import patient_id_of, run_demo
from metaworld.ledger import Ledger
from metaworld.ledger.checkpoint import load_or_create_ledger_key
from metaworld.records import import_bundles
from metaworld.store import Base, make_engine
from support import PG_URL, SHARED_DATA

SYNTHEA = SHARED_DATA / "synthea-r4"


def bundles() -> list[Path]:
    if not SYNTHEA.is_dir():
        pytest.skip(f"shared Synthea patients not found at {SYNTHEA}")
    return sorted(SYNTHEA.glob("*.json"))


def pg_url_or_skip() -> str:
    probe = sqlalchemy.create_engine(PG_URL)
    try:
        with probe.connect():
            pass
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}")
    finally:
        probe.dispose()
    engine = make_engine(PG_URL)
    Base.metadata.drop_all(engine)  # a clean slate for this story
    engine.dispose()
    return PG_URL


@pytest.fixture(params=["sqlite", "postgres"])
def story_db(request, data_dir) -> str:
    if request.param == "postgres":
        return pg_url_or_skip()
    return f"sqlite:///{data_dir / 'metaworld.db'}"


async def test_the_consultation_story(story_db, data_dir):
    lines: list[str] = []
    result = await run_demo(story_db, data_dir, bundles(), lines.append)
    assert result.outcomes == {
        "consented clinician": "RecordShown",
        "clinician without consent": "RecordDenied",
        "another patient in the room": "RecordDenied",
        "clinician in another room": "RecordDenied",
        "after revocation": "RecordDenied",
    }
    assert result.vital_signs > 0
    assert result.purged_after_ticks is not None and result.purged_after_ticks <= 1
    assert result.access_entries == 5  # every attempt, permit or deny, is in the ledger
    assert result.ledger_ok
    told = "\n".join(lines)
    assert "record views held by anyone else: 0" in told
    # The accounting names the other patient by pseudonym, never by account id.
    assert "other-patient" not in told and "Patient " in told


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_the_story_with_the_consent_service_in_its_own_process(data_dir, tmp_path):
    db = f"sqlite:///{data_dir / 'metaworld.db'}"
    make_engine(db).dispose()  # tables exist before two processes open the file
    port = free_port()
    log = (tmp_path / "consent.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metaworld.cli",
            "consent",
            "serve",
            "--port",
            str(port),
            "--db",
            db,
            "--data-dir",
            str(data_dir),
        ],
        stderr=log,
    )
    try:
        async with httpx.AsyncClient() as http:
            with trio.fail_after(30):
                while True:
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                            break
                    except httpx.TransportError:
                        await trio.sleep(0.2)
        result = await run_demo(
            db, data_dir, bundles(), lambda _: None, consent_url=f"http://127.0.0.1:{port}"
        )
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert result.outcomes["consented clinician"] == "RecordShown"
    assert [v for k, v in result.outcomes.items() if k != "consented clinician"] == [
        "RecordDenied"
    ] * 4
    assert result.purged_after_ticks is not None and result.purged_after_ticks <= 1
    assert result.access_entries == 5 and result.ledger_ok


def verify(data_dir: Path, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "metaworld.cli",
            "ledger",
            "verify",
            "--db",
            db,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


async def test_ledger_verify_catches_a_changed_byte_and_swapped_entries(data_dir, tmp_path):
    db = data_dir / "metaworld.db"
    await run_demo(f"sqlite:///{db}", data_dir, bundles(), lambda _: None)
    assert verify(data_dir, f"sqlite:///{db}").returncode == 0

    flipped = tmp_path / "flipped.db"
    shutil.copy(db, flipped)
    with sqlite3.connect(flipped) as conn:
        body = bytearray(
            conn.execute("SELECT body FROM ledger_entries WHERE idx = 2").fetchone()[0]
        )
        body[len(body) // 2] ^= 0x01
        conn.execute("UPDATE ledger_entries SET body = ? WHERE idx = 2", (bytes(body),))
    out = verify(data_dir, f"sqlite:///{flipped}")
    assert out.returncode != 0 and "2" in out.stdout + out.stderr

    swapped = tmp_path / "swapped.db"
    shutil.copy(db, swapped)
    with sqlite3.connect(swapped) as conn:
        rows = {
            i: conn.execute(
                "SELECT body, leaf_hash FROM ledger_entries WHERE idx = ?", (i,)
            ).fetchone()
            for i in (3, 4)
        }
        for i, j in ((3, 4), (4, 3)):
            conn.execute(
                "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = ?", (*rows[j], i)
            )
    out = verify(data_dir, f"sqlite:///{swapped}")
    assert out.returncode != 0 and "3" in out.stdout + out.stderr


class HangingService(InProcessConsentService):
    """A consent service that stops answering record requests."""

    def fetch_view(self, request):  # type: ignore[override]
        time.sleep(3)
        return super().fetch_view(request)


@pytest.fixture
def consent_engine(data_dir):
    engine = make_engine(f"sqlite:///{data_dir / 'metaworld.db'}")
    import_bundles(engine, [b for b in bundles() if "Bibi" in b.name])
    yield engine
    engine.dispose()


@pytest.fixture
async def clinic(start_server, consent_engine, data_dir):
    """A server with the embedded consent service over Bibi's record: (ledger, url, id)."""
    ledger = Ledger(consent_engine, load_or_create_ledger_key(data_dir))
    server = await start_server(consent=InProcessConsentService(consent_engine, ledger))
    bibi = patient_id_of(next(b for b in bundles() if "Bibi" in b.name))
    return ledger, f"ws://127.0.0.1:{server.ws_port}/", bibi


async def in_room(*clients):
    doctor = clients[0]
    await doctor.join_room("consult-3")
    await doctor.wait_for(lambda c: c.room == "consult-3")
    for other in clients[1:]:
        if other.you.role == "patient":
            await doctor.admit(other.avatar_id)
    await trio.sleep(0.15)
    for other in clients[1:]:
        await other.join_room("consult-3")
        await other.wait_for(lambda c: c.room == "consult-3")


async def test_a_hanging_consent_service_means_deny_and_the_tick_goes_on(
    start_server, make_token, consent_engine, data_dir
):
    ledger = Ledger(consent_engine, load_or_create_ledger_key(data_dir))
    service = HangingService(consent_engine, ledger)
    server = await start_server(consent=service, consent_timeout_s=0.3)
    url = f"ws://127.0.0.1:{server.ws_port}/"
    bibi = patient_id_of(next(b for b in bundles() if "Bibi" in b.name))
    async with (
        metaworld_sdk.connect(url, make_token("doc", scopes=("user/*.rs",))) as doc,
        metaworld_sdk.connect(url, make_token("bibi", "patient", patient=bibi)) as pat,
    ):
        await in_room(doc, pat)
        tick = doc.last_tick
        started = trio.current_time()
        reply = await doc.reply(await doc.request_record(pat.avatar_id, ["vital_signs"]))
        assert isinstance(reply, protocol.RecordDenied) and reply.reason == "unavailable"
        assert trio.current_time() - started < 1.5
        await doc.wait_for(lambda c: c.last_tick >= tick + 10, timeout=2)  # ticks went on


async def test_spoofed_ids_and_missing_scopes_are_denied_alike(clinic, make_token):
    ledger, url, bibi = clinic
    async with (
        metaworld_sdk.connect(url, make_token("doc", scopes=("user/*.rs",))) as doc,
        metaworld_sdk.connect(url, make_token("noscope")) as noscope,
        metaworld_sdk.connect(url, make_token("bibi", "patient", patient=bibi)) as pat,
    ):
        await in_room(doc, noscope, pat)
        granted = await pat.reply(await pat.grant_consent(["vital_signs"]))
        assert isinstance(granted, protocol.ConsentResult) and granted.ok
        shown = await doc.reply(await doc.request_record(pat.avatar_id, ["vital_signs"]))
        assert isinstance(shown, protocol.RecordShown)

        attempts = [
            (noscope, pat.avatar_id, None),  # a token without SMART scopes
            (doc, noscope.avatar_id, None),  # a clinician's avatar passed off as a patient
            (doc, 60000, None),  # no such avatar
            (doc, pat.avatar_id, "consult-9"),  # a room the requester is not in
        ]
        replies = []
        for client, target, room in attempts:
            number = await client.request_record(target, ["vital_signs"], room=room)
            replies.append(await client.reply(number))
        assert all(isinstance(r, protocol.RecordDenied) for r in replies)
        assert len({(r.reason, r.message) for r in replies}) == 1  # nothing to tell apart

        # A malformed consent change is refused, and a clinician may not grant for a patient.
        other = await doc.reply(await doc.grant_consent(["vital_signs"]))
        assert isinstance(other, protocol.ConsentResult) and not other.ok
    entries = ledger.entries(limit=100, kind="access")
    assert len(entries) == 5


async def test_break_the_glass_is_time_boxed_and_flagged(clinic, make_token):
    ledger, url, bibi = clinic
    async with (
        metaworld_sdk.connect(url, make_token("er-doc", scopes=("user/*.rs",))) as doc,
        metaworld_sdk.connect(url, make_token("bibi", "patient", patient=bibi)) as pat,
    ):
        await in_room(doc, pat)
        denied = await doc.reply(await doc.request_record(pat.avatar_id, ["vital_signs"]))
        assert isinstance(denied, protocol.RecordDenied)
        glass = await doc.reply(await doc.break_glass(pat.avatar_id, "unresponsive", 60))
        assert isinstance(glass, protocol.ConsentResult) and glass.ok and glass.end_ms
        shown = await doc.reply(
            await doc.request_record(pat.avatar_id, ["vital_signs"], purpose="ETREAT")
        )
        assert isinstance(shown, protocol.RecordShown)
    flagged = [e.entry for e in ledger.entries(limit=100) if e.entry.review]
    assert {e.kind for e in flagged} >= {"break_glass_start", "access"}
    assert all(
        e.reason_hash and "unresponsive" not in e.reason_hash
        for e in flagged
        if e.kind == "break_glass_start"
    )


async def test_a_granted_consent_is_audited_with_the_categories_shared(clinic, make_token):
    ledger, url, bibi = clinic
    async with metaworld_sdk.connect(url, make_token("bibi", "patient", patient=bibi)) as pat:
        granted = await pat.reply(await pat.grant_consent(["vital_signs", "allergies"]))
        assert isinstance(granted, protocol.ConsentResult) and granted.ok
    [entry] = [e.entry for e in ledger.entries(limit=10, kind="consent_granted")]
    assert entry.categories == ["vital_signs", "allergies"]


async def test_grants_add_up_and_each_revocation_withdraws_only_its_own(clinic, make_token):
    _, url, bibi = clinic
    scopes = ("user/*.rs",)
    async with (
        metaworld_sdk.connect(url, make_token("dr-a", scopes=scopes)) as a,
        metaworld_sdk.connect(url, make_token("dr-b", scopes=scopes)) as b,
        metaworld_sdk.connect(url, make_token("bibi", "patient", patient=bibi)) as pat,
    ):
        await in_room(a, b, pat)

        async def ask(doc, categories):
            return type(await doc.reply(await doc.request_record(pat.avatar_id, categories)))

        first = await pat.reply(await pat.grant_consent(["vital_signs"], grantee=a.avatar_id))
        await pat.reply(await pat.grant_consent(["vital_signs"], grantee=b.avatar_id))
        await pat.reply(await pat.grant_consent(["medications"], grantee=a.avatar_id))
        assert await ask(a, ["vital_signs"]) is protocol.RecordShown
        assert await ask(b, ["vital_signs"]) is protocol.RecordShown
        assert await ask(a, ["medications"]) is protocol.RecordShown
        assert await ask(b, ["medications"]) is protocol.RecordDenied
        await pat.reply(await pat.revoke_consent(first.consent))
        assert await ask(a, ["vital_signs"]) is protocol.RecordDenied
        assert await ask(b, ["vital_signs"]) is protocol.RecordShown
        assert await ask(a, ["medications"]) is protocol.RecordShown


async def test_ledger_verify_refuses_entries_no_checkpoint_covers(data_dir, tmp_path):
    db = data_dir / "metaworld.db"
    await run_demo(f"sqlite:///{db}", data_dir, bundles(), lambda _: None)
    stripped = tmp_path / "no-checkpoints.db"
    shutil.copy(db, stripped)
    with sqlite3.connect(stripped) as conn:
        conn.execute("DELETE FROM ledger_checkpoints")
    out = verify(data_dir, f"sqlite:///{stripped}")
    assert out.returncode == 1 and "UNSIGNED: entries 0 to" in out.stdout
