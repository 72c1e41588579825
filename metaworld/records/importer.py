"""Importing FHIR bundle files into the records tables, one transaction per bundle.

A bundle is parsed and validated in full before its transaction opens, so a rejected
bundle stores nothing. Re-importing is idempotent: a resource already stored is
replaced only by a copy whose ``meta.lastUpdated`` is newer. Without that stamp the
first stored copy stays, so bundles that repeat a shared resource with small
differences (Synthea repeats each Organization with per-patient counts) do not
overwrite each other on every run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from metaworld.records.bundle import ParsedBundle, ParsedResource, parse_bundle
from metaworld.records.errors import BundleRejectedError
from metaworld.records.store import RecordRow

log = logging.getLogger("metaworld.records")

_ID_CHUNK = 400  # ids per IN (...) query; SQLite allows 999 bound parameters in old builds


class Rejection(msgspec.Struct, frozen=True):
    """A bundle that was not stored, and where it is malformed."""

    file: str
    resource: str
    field: str
    problem: str


class ImportReport(msgspec.Struct):
    """Counts of one import run; `rejected` lists the bundles that stored nothing."""

    bundles: int = 0
    resources: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0  # differed from the stored copy but was not newer, so not stored
    patients: int = 0
    rejected: list[Rejection] = msgspec.field(default_factory=list)


def import_bundles(engine: Engine, paths: Iterable[Path]) -> ImportReport:
    """Import bundle files; every file is its own transaction."""
    report = ImportReport()
    patients: set[str] = set()
    for path in paths:
        try:
            parsed = parse_bundle(path.read_bytes(), str(path))
        except BundleRejectedError as exc:
            # The file name stays out of the log: exports often name it after the patient.
            log.warning("bundle rejected at %s field %s", exc.resource, exc.field)
            report.rejected.append(Rejection(exc.source, exc.resource, exc.field, exc.problem))
            continue
        with Session(engine) as session, session.begin():
            _store(session, parsed, report)
        report.bundles += 1
        patients.update(r.patient_id for r in parsed.resources if r.patient_id is not None)
    report.patients = len(patients)
    log.info(
        "imported %d bundles: %d created, %d updated, %d unchanged, %d rejected",
        report.bundles,
        report.created,
        report.updated,
        report.unchanged,
        len(report.rejected),
    )
    return report


def _store(session: Session, bundle: ParsedBundle, report: ImportReport) -> None:
    existing = _existing_rows(session, bundle.resources)
    for resource in bundle.resources:
        report.resources += 1
        row = existing.get((resource.resource_type, resource.resource_id))
        if row is None:
            session.add(_new_row(resource))
            report.created += 1
        elif row.body == resource.body:
            _refresh_derived(row, resource)
            report.unchanged += 1
        elif _is_newer(resource, row):
            row.body = resource.body
            row.last_updated_ms = resource.last_updated_ms
            _refresh_derived(row, resource)
            report.updated += 1
        else:
            report.kept += 1


def _existing_rows(
    session: Session, resources: Sequence[ParsedResource]
) -> dict[tuple[str, str], RecordRow]:
    ids = sorted({r.resource_id for r in resources})
    found: dict[tuple[str, str], RecordRow] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        for row in session.scalars(select(RecordRow).where(RecordRow.resource_id.in_(chunk))):
            found[(row.resource_type, row.resource_id)] = row
    return found


def _new_row(resource: ParsedResource) -> RecordRow:
    return RecordRow(
        resource_type=resource.resource_type,
        resource_id=resource.resource_id,
        patient_id=resource.patient_id,
        category=resource.category,
        effective_ms=resource.effective_ms,
        last_updated_ms=resource.last_updated_ms,
        body=resource.body,
    )


def _refresh_derived(row: RecordRow, resource: ParsedResource) -> None:
    # Derived columns follow the code's category table, which may change between runs.
    row.patient_id = resource.patient_id
    row.category = resource.category
    row.effective_ms = resource.effective_ms


def _is_newer(resource: ParsedResource, row: RecordRow) -> bool:
    if resource.last_updated_ms is None:
        return False
    return row.last_updated_ms is None or resource.last_updated_ms > row.last_updated_ms
