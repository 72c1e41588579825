"""A clinician and a patient in a consultation room, through the web client's panels.

The server's database holds the synthetic (Synthea) patients. The patient shares vital
signs with the clinician, the clinician reads them, the patient is told and sees the
access in the accounting of disclosures, then withdraws consent and the clinician's
view disappears. Break-the-glass then opens the record for emergency treatment only.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from webxr_harness import (
    METAWORLD,
    REPO_ROOT,
    ServerProcess,
    axe_violations,
    hook,
    running_server,
    screenshot_checked,
    sign_in,
    wait_connected,
)

from metaworld.auth import mint_dev_token

pytestmark = pytest.mark.browser

SYNTHEA = REPO_ROOT.parent / "shared" / "data" / "synthea-r4"
BIBI = "475d72ca-91c7-7211-97e3-f000af33fc04"  # a synthetic patient with vital signs
ROOM = "consult-2"
PURGE_LIMIT_S = 1.0


@pytest.fixture(scope="module")
def clinic_server(webxr_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`metaworld serve` on a data directory whose database holds the Synthea patients."""
    bundles = sorted(SYNTHEA.glob("*.json"))
    if not any(BIBI in b.name for b in bundles):
        pytest.skip(f"the synthetic patients are not in {SYNTHEA}")
    data_dir = tmp_path_factory.mktemp("mw-clinic")
    imported = subprocess.run(
        [str(METAWORLD), "records", "import", "--data-dir", str(data_dir), *map(str, bundles)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    with running_server(data_dir) as server:
        yield server


def enter_room(page: Any, room: str, tries: int = 3) -> None:
    """Go to `room` with the room menu, trying again after a refusal."""
    for _ in range(tries):
        page.select_option("#jump-room", room)
        page.click("#jump-form button[type=submit]")
        try:
            page.wait_for_function(f"() => __metaworld.room === '{room}'", timeout=2000)
            return
        except PlaywrightTimeout:
            time.sleep(0.3)
    pytest.fail(f"could not enter {room}: {hook(page, 'm.lastError')}")


def tab_reaches(page: Any, start: str, target: str, presses: int = 15) -> bool:
    """Whether pressing Tab from `start` reaches the element `target` by keyboard alone."""
    page.focus(start)
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => document.activeElement === document.querySelector({target!r})"):
            return True
    return False


def test_consent_view_disclosure_and_purge_through_the_panels(
    clinic_server: ServerProcess, new_page: Callable[..., Any]
) -> None:
    server = clinic_server
    console: list[str] = []

    # The clinician signs in with a token carrying staff scopes; the patient signs in on
    # the dev form with the record they own. Both arrive in the lobby.
    token = mint_dev_token(
        server.data_dir, "dr-page", "clinician", name="Dr Page", scopes=("user/*.rs",)
    )
    doctor = new_page(server.http_url)
    doctor.on("console", lambda m: console.append(m.text))
    sign_in(doctor, "clinician", token=token)
    doc = wait_connected(doctor)
    patient = new_page(server.http_url)
    patient.on("console", lambda m: console.append(m.text))
    patient.wait_for_selector("#join:not([disabled])")
    patient.select_option("#role", "patient")
    patient.fill("#record-id", BIBI)
    patient.click("#join")
    pat = wait_connected(patient)
    # Each sees only the panels of their role.
    assert doctor.locator("[data-panel=record]").is_visible()
    assert doctor.locator("[data-panel=consent]").count() == 0
    assert patient.locator("[data-panel=consent]").is_visible()
    assert patient.locator("[data-panel=record], [data-panel=admit]").count() == 0

    # The clinician saw the patient in the lobby, goes to the consultation room and
    # admits them from there; then the patient walks in.
    doctor.wait_for_selector(f"#admit-patient option[value='{pat['id']}']", state="attached")
    enter_room(doctor, ROOM)
    doctor.select_option("#admit-patient", str(pat["id"]))
    doctor.click("#admit-form button[type=submit]")
    assert "may now enter" in doctor.locator("#admit-status").inner_text()
    enter_room(patient, ROOM)

    # Before any consent the clinician's request is denied, plainly.
    doctor.wait_for_selector(f"#record-patient option[value='{pat['id']}']", state="attached")
    doctor.select_option("#record-patient", str(pat["id"]))
    assert doctor.is_checked("#record-cat-vital_signs")
    assert doctor.locator("#record-purpose option[value=ETREAT]").is_disabled()
    assert tab_reaches(doctor, "#record-patient", "#record-form button[type=submit]")
    doctor.click("#record-form button[type=submit]")
    doctor.wait_for_function("() => __metaworld.clinical.record.denied === 1")
    assert "not permitted" in doctor.locator("#record-status").inner_text()
    assert hook(doctor, "m.records") == {}

    # The patient shares vital signs with Dr Page (not with every clinician).
    patient.wait_for_selector(f"#consent-grantee option[value='{doc['id']}']", state="attached")
    patient.check("#consent-cat-vital_signs")
    patient.select_option("#consent-grantee", str(doc["id"]))
    patient.click("#consent-form button[type=submit]")
    patient.wait_for_selector("#consent-list li[data-status=active] button")
    assert "Vital signs for Dr Page" in patient.locator("#consent-list").inner_text()

    # The clinician asks again and reads the readings.
    doctor.click("#record-form button[type=submit]")
    doctor.wait_for_function(
        f"() => __metaworld.records[{pat['id']}]?.counts.vital_signs > 0", timeout=10_000
    )
    held = hook(doctor, "m.records")
    assert list(held) == [str(pat["id"])]
    assert held[str(pat["id"])]["categories"] == ["vital_signs"]
    readings = doctor.locator("#record-content table[data-category=vital_signs] tbody tr")
    assert readings.count() == held[str(pat["id"])]["counts"]["vital_signs"]
    cells = readings.first.locator("td").all_inner_texts()
    assert len(cells) == 4 and cells[0][:2] in ("19", "20") and cells[2] != "—", cells
    shown = {c for c in doctor.locator("#record-content td").all_inner_texts() if len(c) > 3}
    assert "Showing vital signs" in doctor.locator("#record-status").inner_text()

    # The patient is told who looked at what, and the access is in the accounting.
    patient.wait_for_function(
        "() => document.querySelector('#consent-notice').textContent"
        ".includes('Dr Page viewed your vital signs')"
    )
    patient.wait_for_function(
        "() => [...document.querySelectorAll('#disclosures tbody tr')].some(r =>"
        " r.textContent.includes('Dr Page') && r.textContent.includes('asked to view')"
        " && r.textContent.includes('shown'))"
    )
    assert hook(patient, "m.clinical.consent.notices") == 1
    assert hook(patient, "m.records") == {}  # a patient's copy is never kept

    for page, name, part in (
        (doctor, "clinical-clinician", "#record-content"),
        (patient, "clinical-patient", "#consent-accounting"),
    ):
        page.locator(part).scroll_into_view_if_needed()
        screenshot_checked(page, name)
        assert axe_violations(page) == [], name

    # The patient revokes; the clinician's view is gone within a second, with a notice.
    patient.click("#consent-list li[data-status=active] button")
    started = time.monotonic()
    doctor.wait_for_function(
        "() => Object.keys(__metaworld.records).length === 0"
        " && !document.querySelector('#record-content table')",
        timeout=5000,
        polling=20,
    )
    purged_after = time.monotonic() - started
    assert purged_after < PURGE_LIMIT_S, f"the view stayed {purged_after:.2f} s"
    assert "withdrew consent" in doctor.locator("#record-status").inner_text()
    assert hook(doctor, "m.purges") == 1
    patient.wait_for_selector("#consent-list li[data-status=inactive]")

    # Break-the-glass: emergency treatment only, with its end time, flagged for review.
    doctor.fill("#break-glass-reason", "unresponsive during the consultation")
    doctor.click("#break-glass-form button[type=submit]")
    doctor.wait_for_function(
        "() => document.querySelector('#break-glass-state').textContent"
        ".includes('Emergency access to')"
    )
    assert " until " in doctor.locator("#break-glass-state").inner_text()
    assert doctor.eval_on_selector("#record-purpose", "s => s.value") == "ETREAT"
    doctor.click("#record-form button[type=submit]")
    doctor.wait_for_function(f"() => __metaworld.records[{pat['id']}]?.counts.vital_signs > 0")
    assert "emergency treatment" in doctor.locator("#record-content").inner_text()
    patient.wait_for_function("() => __metaworld.clinical.consent.notices === 2")
    patient.wait_for_selector("#disclosures tr.review")
    assert "flagged for review" in patient.locator("#disclosures").inner_text()
    assert axe_violations(doctor) == [] and axe_violations(patient) == []

    # Nothing from the record reached the console or the hook beyond counts.
    exposed = list(console)
    for page in (doctor, patient):
        exposed.append(json.dumps(hook(page, "({records: m.records, clinical: m.clinical})")))
    leaked = [v for v in shown | {"Bibi"} if any(v in text for text in exposed)]
    assert leaked == []
    assert doctor.errors == [] and patient.errors == []
