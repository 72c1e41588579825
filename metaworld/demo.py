"""`metaworld consent demo`: the consultation story, end to end, as a newcomer's tour.

Starts a real world server on loopback with the embedded consent service, imports the
synthetic patients, and plays the story with real clients: a patient grants consent, a
clinician reads vital signs, a second clinician, another patient and someone in another
room are denied, the patient sees who looked, revokes, and the open view is purged.
Each step prints what each party saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import metaworld_sdk
from metaworld import protocol
from metaworld.auth import dev_verifier, mint_dev_token
from metaworld.consent import ConsentService, InProcessConsentService
from metaworld.consent.remote import RemoteConsentService, ServiceTokenSource
from metaworld.layout import load_layout
from metaworld.ledger import Ledger, verify_store
from metaworld.ledger.checkpoint import load_or_create_ledger_key
from metaworld.records import import_bundles
from metaworld.server import ServerConfig, WorldServer
from metaworld.store import make_engine

SCOPE = ("user/*.rs",)
ROOM = "consult-2"


@dataclass
class DemoResult:
    """What happened, for tests: request outcomes by step name, and the ledger check."""

    outcomes: dict[str, str] = field(default_factory=dict)
    vital_signs: int = 0
    purged_after_ticks: int | None = None
    access_entries: int = 0
    ledger_ok: bool = False


def patient_id_of(bundle: Path) -> str:
    """The Patient resource id in a FHIR bundle file."""
    for entry in json.loads(bundle.read_text())["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            return str(entry["resource"]["id"])
    raise ValueError(f"{bundle} holds no Patient")


async def run_demo(
    db_url: str,
    data_dir: Path,
    bundles: list[Path],
    say: Callable[[str], None] = print,
    consent_url: str | None = None,
) -> DemoResult:
    """Play the story. With `consent_url`, the world server uses the consent service
    running as its own process there (on the same database and data directory)."""
    result = DemoResult()
    engine = make_engine(db_url)
    report = import_bundles(engine, bundles)
    say(f"[1] imported {report.patients} synthetic patients ({report.resources} resources)")
    patient_file = next(b for b in bundles if not b.name.startswith(("hospital", "practitioner")))
    record_id = patient_id_of(patient_file)
    ledger = Ledger(engine, load_or_create_ledger_key(data_dir))
    ledger_size = ledger.size()
    service: ConsentService
    if consent_url is None:
        service = InProcessConsentService(engine, ledger)
    else:
        service = RemoteConsentService(consent_url, ServiceTokenSource.from_data_dir(data_dir))
        say(f"    (the consent service runs as its own process at {consent_url})")
    config = ServerConfig(
        layout=load_layout(),
        verifier=dev_verifier(data_dir),
        engine=engine,
        data_dir=data_dir,
        ws_port=0,
        http_port=-1,
        consent=service,
    )

    def token(sub: str, role: Any, name: str, patient: str | None = None) -> str:
        scopes = SCOPE if role != "patient" else ("patient/*.rs",)
        return mint_dev_token(
            data_dir, sub, role, name=name, scopes=scopes, patient=patient, ttl_s=600
        )

    async with trio.open_nursery() as nursery:
        server = WorldServer(config, label_secret=b"demo")
        await nursery.start(server.serve)
        url = f"ws://127.0.0.1:{server.ws_port}/"
        async with (
            metaworld_sdk.connect(url, token("demo-patient", "patient", "Pat", record_id)) as pat,
            metaworld_sdk.connect(url, token("dr-ada", "clinician", "Dr Ada")) as ada,
            metaworld_sdk.connect(url, token("dr-ben", "clinician", "Dr Ben")) as ben,
            metaworld_sdk.connect(url, token("other-patient", "patient", "Oli")) as oli,
            metaworld_sdk.connect(url, token("dr-cy", "clinician", "Dr Cy")) as cy,
        ):
            await _gather_in_room(ada, ben, pat, oli, cy, say)
            await _story(ada, ben, pat, oli, cy, result, say)
        nursery.cancel_scope.cancel()

    if isinstance(service, InProcessConsentService):
        service.checkpoint()
    else:
        service.close()
        ledger = Ledger(engine, load_or_create_ledger_key(data_dir))  # what the service wrote
    entries = ledger.entries(limit=10_000, kind="access")
    result.access_entries = len([e for e in entries if e.index >= ledger_size])
    check = verify_store(engine, ledger.public_key)
    result.ledger_ok = check.ok
    say(
        f"[9] the ledger holds {ledger.size()} entries ({result.access_entries} access "
        f"decisions from this story); recomputed tree and signed checkpoints: "
        f"{'intact' if check.ok else 'BROKEN'}"
    )
    engine.dispose()
    return result


async def _gather_in_room(
    ada: metaworld_sdk.Client,
    ben: metaworld_sdk.Client,
    pat: metaworld_sdk.Client,
    oli: metaworld_sdk.Client,
    cy: metaworld_sdk.Client,
    say: Callable[[str], None],
) -> None:
    for staff in (ada, ben):
        await staff.join_room(ROOM)
    await ada.wait_for(lambda c: c.room == ROOM)
    await ben.wait_for(lambda c: c.room == ROOM)
    for patient in (pat, oli):
        await ada.admit(patient.avatar_id)
    await cy.join_room("waiting")
    await trio.sleep(0.2)  # admits take effect on the next tick
    for patient in (pat, oli):
        await patient.join_room(ROOM)
        await patient.wait_for(lambda c: c.room == ROOM)
    await ada.wait_for(lambda c: pat.avatar_id in c.view and oli.avatar_id in c.view)
    say(
        f"[2] in {ROOM}: Dr Ada, Dr Ben, the patient (seen as {pat.you.label if pat.you else '?'})"
        f" and another patient; Dr Cy is in the waiting room"
    )


async def _story(
    ada: metaworld_sdk.Client,
    ben: metaworld_sdk.Client,
    pat: metaworld_sdk.Client,
    oli: metaworld_sdk.Client,
    cy: metaworld_sdk.Client,
    result: DemoResult,
    say: Callable[[str], None],
) -> None:
    granted = await pat.reply(await pat.grant_consent(["vital_signs"], grantee=ada.avatar_id))
    assert isinstance(granted, protocol.ConsentResult)
    say(f"[3] the patient grants Dr Ada vital signs for treatment: consent {granted.consent}")

    shown = await ada.reply(await ada.request_record(pat.avatar_id, ["vital_signs"]))
    result.outcomes["consented clinician"] = type(shown).__name__
    if isinstance(shown, protocol.RecordShown):
        result.vital_signs = len(shown.view.vital_signs)
        sample = ", ".join(
            f"{v.display} {v.value}{v.unit or ''}" for v in shown.view.vital_signs[:3]
        )
        say(f"[4] Dr Ada sees {result.vital_signs} vital-sign readings: {sample}, ...")
    await pat.wait_for(lambda c: pat.avatar_id in c.records)
    say("    the patient receives the same view, marked as seen by Dr Ada")

    for name, client in (
        ("clinician without consent", ben),
        ("another patient in the room", oli),
        ("clinician in another room", cy),
    ):
        reply = await client.reply(await client.request_record(pat.avatar_id, ["vital_signs"]))
        result.outcomes[name] = type(reply).__name__
        text = reply.message if isinstance(reply, protocol.RecordDenied) else "SHOWN"
        say(f"[5] {name} asks for the same record: {text}")
    others = (ben, oli, cy)
    leaked = [c for c in others if c.records]
    say(f"    record views held by anyone else: {len(leaked)}")

    state = await pat.reply(await pat.query_consent())
    assert isinstance(state, protocol.ConsentState)
    seen = [d for d in state.disclosures if d.kind == "access"]
    say(f"[6] the patient's accounting of disclosures lists {len(seen)} decisions:")
    for item in seen:
        say(f"      {item.who} ({item.role}) {', '.join(item.categories)}: {item.outcome}")

    tick = ada.last_tick
    revoked = await pat.reply(await pat.revoke_consent(granted.consent))
    assert isinstance(revoked, protocol.ConsentResult)
    await ada.wait_for(lambda c: pat.avatar_id not in c.records)
    result.purged_after_ticks = max(0, ada.last_tick - tick)
    say(f"[7] the patient revokes; Dr Ada's open view is purged ({revoked.status})")
    again = await ada.reply(await ada.request_record(pat.avatar_id, ["vital_signs"]))
    result.outcomes["after revocation"] = type(again).__name__
    say(f"[8] Dr Ada asks again: {getattr(again, 'message', 'SHOWN')}")
