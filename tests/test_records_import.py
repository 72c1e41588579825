"""Record import from FHIR R4 bundles, categories and the panel view."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from metaworld.records import (
    CATEGORIES,
    CATEGORY_RULES,
    BundleRejectedError,
    DateWindow,
    RecordView,
    UnknownCategoryError,
    category_of,
    import_bundles,
    parse_bundle,
    record_view,
)
from metaworld.records.cli import import_command
from metaworld.records.dates import fhir_datetime_ms
from metaworld.records.store import RecordRow
from metaworld.store import make_engine

REPO_ROOT = Path(__file__).resolve().parent.parent
SYNTHEA = (REPO_ROOT / ".." / "shared" / "data" / "synthea-r4").resolve()
BIBI = "475d72ca-91c7-7211-97e3-f000af33fc04"


def synthea_files() -> list[Path]:
    if not SYNTHEA.is_dir():
        pytest.skip(f"shared Synthea data not found at {SYNTHEA}")
    return sorted(SYNTHEA.glob("*.json"))


def patient_files() -> list[Path]:
    return [p for p in synthea_files() if not p.name.startswith(("practitioner", "hospital"))]


def bibi_bundle() -> dict[str, Any]:
    path = next(p for p in patient_files() if BIBI in p.name)
    bundle: dict[str, Any] = json.loads(path.read_text())
    return bundle


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'records.db'}")


def write(tmp_path: Path, name: str, bundle: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        rows = session.scalars(select(RecordRow).order_by(RecordRow.resource_id))
        return [
            (r.resource_type, r.resource_id, r.patient_id, r.category, r.effective_ms, r.body)
            for r in rows
        ]


def row_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(RecordRow)) or 0


# ---------------------------------------------------------------- Synthea import


def test_the_seven_synthea_patients_import(engine: Engine) -> None:
    report = import_bundles(engine, synthea_files())

    assert report.rejected == []
    assert report.bundles == 9
    assert report.patients == 7
    with Session(engine) as session:
        patients = session.scalars(
            select(RecordRow.resource_id).where(RecordRow.resource_type == "Patient")
        ).all()
        categories = dict(
            session.execute(
                select(RecordRow.category, func.count())
                .where(RecordRow.patient_id == BIBI)
                .group_by(RecordRow.category)
            ).all()
        )
    assert len(patients) == 7
    # Bibi's bundle: 16 observations, 6 of them vital signs (the others are labs).
    assert categories["vital_signs"] == 6
    assert categories["conditions"] == 9
    assert categories["immunizations"] == 18
    assert categories["encounters"] == 13
    assert categories["demographics"] == 1


def test_reimport_changes_nothing(engine: Engine) -> None:
    files = synthea_files()
    import_bundles(engine, files)
    before = snapshot(engine)

    again = import_bundles(engine, files)

    assert (again.created, again.updated, again.rejected) == (0, 0, [])
    assert snapshot(engine) == before


def test_newer_copy_replaces_older_one(engine: Engine, tmp_path: Path) -> None:
    bundle = bibi_bundle()
    import_bundles(engine, [write(tmp_path, "a.json", bundle)])
    patient = bundle["entry"][0]["resource"]
    patient["gender"] = "male"
    patient["meta"] = {"lastUpdated": "2030-01-01T00:00:00Z"}

    report = import_bundles(engine, [write(tmp_path, "b.json", bundle)])

    assert report.updated == 1
    view = record_view(engine, BIBI, ["demographics"])
    assert view.demographics is not None
    assert view.demographics.gender == "male"


def test_patient_without_observations_or_conditions(engine: Engine, tmp_path: Path) -> None:
    bundle = bibi_bundle()
    dropped = {"Observation", "Condition", "DiagnosticReport"}
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] not in dropped]

    report = import_bundles(engine, [write(tmp_path, "sparse.json", bundle)])

    assert report.rejected == []
    view = record_view(engine, BIBI, CATEGORIES)
    assert view.vital_signs == []
    assert view.conditions == []
    assert view.demographics is not None
    assert view.encounters


# ---------------------------------------------------------------- malformed bundles


def corrupt_observation_value(bundle: dict[str, Any]) -> str:
    entry = next(e for e in bundle["entry"] if "valueQuantity" in e["resource"])
    entry["resource"]["valueQuantity"]["value"] = "not a number"
    return f"Observation/{entry['resource']['id']}"


def test_malformed_bundle_is_rejected_naming_file_resource_and_field(
    engine: Engine, tmp_path: Path
) -> None:
    bundle = bibi_bundle()
    resource = corrupt_observation_value(bundle)
    path = write(tmp_path, "broken.json", bundle)

    report = import_bundles(engine, [path])

    assert report.bundles == 0
    [rejection] = report.rejected
    assert rejection.file == str(path)
    assert rejection.resource == resource
    assert rejection.field == "valueQuantity.value"
    assert row_count(engine) == 0  # nothing of the bundle, not even the entries before it


def test_rejected_bundle_does_not_stop_the_others(engine: Engine, tmp_path: Path) -> None:
    bundle = bibi_bundle()
    corrupt_observation_value(bundle)
    other = next(p for p in patient_files() if BIBI not in p.name)

    report = import_bundles(engine, [write(tmp_path, "broken.json", bundle), other])

    assert (len(report.rejected), report.bundles, report.patients) == (1, 1, 1)
    assert record_view(engine, BIBI, ["demographics"]).demographics is None


def minimal_bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    entries = [{"fullUrl": f"urn:uuid:{r.get('id')}", "resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


PATIENT = {"resourceType": "Patient", "id": "p-1", "gender": "female"}


def observation(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "urn:uuid:p-1"},
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("document", "resource", "field"),
    [
        (b"{not json", "bundle", "(json)"),
        (json.dumps({"resourceType": "Patient"}).encode(), "bundle", "resourceType"),
        (json.dumps({**minimal_bundle(), "type": "bogus"}).encode(), "bundle", "type"),
        (
            json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{}]}).encode(),
            "entry[0]",
            "resource",
        ),
        (
            json.dumps(minimal_bundle({"resourceType": "Nonsense", "id": "x"})).encode(),
            "entry[0]",
            "resourceType",
        ),
        (
            json.dumps(minimal_bundle({"resourceType": "Coding", "id": "x"})).encode(),
            "entry[0]",
            "resourceType",
        ),
        (
            json.dumps(minimal_bundle({"resourceType": "Patient", "gender": "f"})).encode(),
            "entry[0]",
            "id",
        ),
        (
            json.dumps(minimal_bundle(PATIENT, observation(status=None))).encode(),
            "Observation/o-1",
            "status",
        ),
        (
            json.dumps(minimal_bundle(PATIENT, observation(bogus=1))).encode(),
            "Observation/o-1",
            "bogus",
        ),
        (
            json.dumps(
                minimal_bundle(PATIENT, observation(subject={"reference": "urn:uuid:gone"}))
            ).encode(),
            "Observation/o-1",
            "subject.reference",
        ),
        (
            json.dumps(
                minimal_bundle(
                    PATIENT, observation(subject={"reference": "Patient?identifier=x|1"})
                )
            ).encode(),
            "Observation/o-1",
            "subject.reference",
        ),
        (json.dumps(minimal_bundle(PATIENT, PATIENT)).encode(), "Patient/p-1", "id"),
    ],
)
def test_each_kind_of_malformed_bundle_names_its_place(
    document: bytes, resource: str, field: str
) -> None:
    with pytest.raises(BundleRejectedError) as caught:
        parse_bundle(document, "case.json")
    assert (caught.value.source, caught.value.resource, caught.value.field) == (
        "case.json",
        resource,
        field,
    )
    assert str(caught.value).startswith(f"case.json: {resource}: field {field}:")


def test_rejection_message_never_quotes_the_bad_value() -> None:
    secret = "Jane Q. Example"
    bundle = minimal_bundle({"resourceType": "Patient", "id": "p-1", "gender": {"x": secret}})
    with pytest.raises(BundleRejectedError) as caught:
        parse_bundle(json.dumps(bundle).encode(), "case.json")
    assert caught.value.field == "gender"
    assert secret not in str(caught.value)


def test_patient_references_resolve_in_every_form() -> None:
    bundle = minimal_bundle(
        PATIENT,
        observation(id="o-1"),
        observation(id="o-2", subject={"reference": "Patient/p-2"}),
        observation(id="o-3", subject={"reference": "https://fhir.example/r4/Patient/p-3"}),
        observation(id="o-4", subject={"reference": "Group/g-1"}),
    )
    parsed = parse_bundle(json.dumps(bundle).encode(), "refs.json")
    patients = {r.resource_id: r.patient_id for r in parsed.resources}
    assert patients == {"p-1": "p-1", "o-1": "p-1", "o-2": "p-2", "o-3": "p-3", "o-4": None}


# ---------------------------------------------------------------- categories and views


def test_category_table_maps_types_and_codes() -> None:
    assert CATEGORY_RULES["medications"].resource_types == (
        "MedicationRequest",
        "MedicationStatement",
    )
    assert category_of(observation()) == "vital_signs"  # by LOINC code alone
    lab = observation(
        code={"coding": [{"system": "http://loinc.org", "code": "94531-1"}]},
        category=[{"coding": [{"code": "laboratory"}]}],
    )
    assert category_of(lab) is None
    tagged = observation(
        code={"coding": [{"system": "http://loinc.org", "code": "0000-0"}]},
        category=[{"coding": [{"code": "vital-signs"}]}],
    )
    assert category_of(tagged) == "vital_signs"
    assert category_of({"resourceType": "Claim"}) is None


def test_view_shows_compact_summaries_newest_first(engine: Engine) -> None:
    import_bundles(engine, synthea_files())

    view = record_view(engine, BIBI, ["vital_signs", "conditions", "encounters"], limit=4)

    assert view.included == ["vital_signs", "conditions", "encounters"]
    assert view.demographics is None  # not asked for
    pressure = next(v for v in view.vital_signs if v.code == "85354-9")
    assert {c.display for c in pressure.components} == {
        "Systolic Blood Pressure",
        "Diastolic Blood Pressure",
    }
    assert all(c.unit == "mm[Hg]" for c in pressure.components)
    dates = [fhir_datetime_ms(e.start) or 0 for e in view.encounters]
    assert dates == sorted(dates, reverse=True)
    assert "encounters" in view.truncated
    assert len(view.encounters) == 4


def test_view_restricted_to_date_windows(engine: Engine) -> None:
    import_bundles(engine, synthea_files())
    start = fhir_datetime_ms("2020-01-01")
    view = record_view(
        engine,
        BIBI,
        ["encounters", "demographics"],
        windows={"encounters": [DateWindow(start, None)], "demographics": []},
    )
    assert view.encounters
    assert all((fhir_datetime_ms(e.start) or 0) >= (start or 0) for e in view.encounters)
    assert view.demographics is None


def test_view_of_unknown_patient_is_empty(engine: Engine) -> None:
    import_bundles(engine, synthea_files()[:1])
    assert record_view(engine, "no-such-patient", CATEGORIES) == RecordView(
        patient="no-such-patient", included=list(CATEGORIES)
    )
    with pytest.raises(UnknownCategoryError):
        record_view(engine, BIBI, ["labs"])


def test_medications_and_allergies_are_summarized(engine: Engine, tmp_path: Path) -> None:
    medication = {
        "resourceType": "MedicationRequest",
        "id": "m-1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1"}],
            "text": "Synthetic tablet 10 mg",
        },
        "subject": {"reference": "urn:uuid:p-1"},
        "authoredOn": "2021-02-03",
        "dosageInstruction": [{"text": "one daily"}],
    }
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a-1",
        "patient": {"reference": "Patient/p-1"},
        "code": {"text": "Synthetic pollen"},
        "criticality": "low",
        "recordedDate": "2019-05-01",
        "reaction": [{"manifestation": [{"text": "sneezing"}]}],
    }
    path = write(tmp_path, "meds.json", minimal_bundle(PATIENT, medication, allergy))
    import_bundles(engine, [path])

    view = record_view(engine, "p-1", ["medications", "allergies"])

    [med] = view.medications
    assert (med.display, med.status, med.dosage, med.date) == (
        "Synthetic tablet 10 mg",
        "active",
        "one daily",
        "2021-02-03",
    )
    [item] = view.allergies
    assert (item.display, item.criticality, item.reactions) == (
        "Synthetic pollen",
        "low",
        ["sneezing"],
    )


# ---------------------------------------------------------------- CLI and logs


def test_import_command_prints_counts_and_fails_on_rejection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert import_command(url, synthea_files()[:2]) == 0
    out = capsys.readouterr().out
    assert "bundles 2" in out
    assert "created" in out

    bundle = bibi_bundle()
    resource = corrupt_observation_value(bundle)
    broken = write(tmp_path, "broken.json", bundle)
    assert import_command(url, [broken]) == 1
    err = capsys.readouterr().err
    assert f"{broken}: {resource}: field valueQuantity.value" in err

    assert import_command(url, [tmp_path / "missing.json"]) == 2


def test_logs_hold_no_names_or_record_content(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = bibi_bundle()
    corrupt_observation_value(bundle)
    broken = write(tmp_path, "Bibi254_Schowalter414.json", bundle)
    with caplog.at_level(logging.DEBUG, logger="metaworld"):
        import_bundles(engine, [broken, *synthea_files()])
        record_view(engine, BIBI, CATEGORIES)
    text = caplog.text
    assert caplog.records
    for needle in ("Bibi254", "Schowalter414", "COVID", "Body temperature"):
        assert needle not in text
