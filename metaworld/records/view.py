"""What a clinician's panel shows of a record: compact summaries per category.

`record_view` reads only the categories it is given, newest first, and never looks at
consent: the consent service decides which categories (and which date windows) to ask
for. Summaries keep what fits on a panel in a room (what, value, when) and leave out
identifiers, addresses and free text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
from sqlalchemy import ColumnElement, Engine, and_, false, or_, select, true
from sqlalchemy.orm import Session

from metaworld.records.categories import CATEGORIES, Category, clinical_date
from metaworld.records.errors import RecordsError
from metaworld.records.store import RecordRow

DEFAULT_LIMIT: Final = 50  # items per category; a panel shows the newest


class UnknownCategoryError(RecordsError):
    """A category name that is not one of `CATEGORIES`."""


class DateWindow(msgspec.Struct, frozen=True, array_like=True):
    """A half-open span of clinical time in ms since the epoch; None is unbounded."""

    start_ms: int | None = None
    end_ms: int | None = None


class Quantity(msgspec.Struct, frozen=True, omit_defaults=True):
    display: str
    value: float | None = None
    unit: str | None = None
    text: str | None = None  # a coded or string value, when there is no number


class VitalSign(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str | None
    display: str
    date: str | None
    value: float | None = None
    unit: str | None = None
    text: str | None = None
    components: list[Quantity] = msgspec.field(default_factory=list)


class ConditionItem(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str | None
    display: str
    onset: str | None
    clinical_status: str | None = None
    abated: str | None = None


class MedicationItem(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str | None
    display: str
    date: str | None
    status: str | None = None
    dosage: str | None = None


class ImmunizationItem(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str | None
    display: str
    date: str | None
    status: str | None = None


class AllergyItem(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str | None
    display: str
    date: str | None
    criticality: str | None = None
    clinical_status: str | None = None
    reactions: list[str] = msgspec.field(default_factory=list)


class EncounterItem(msgspec.Struct, frozen=True, omit_defaults=True):
    display: str
    start: str | None
    end: str | None = None
    encounter_class: str | None = None
    status: str | None = None
    reason: str | None = None


class Demographics(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str | None
    gender: str | None = None
    birth_date: str | None = None
    deceased: bool = False


class RecordView(msgspec.Struct, omit_defaults=True):
    """The categories in `included` were read; the others were not asked for.

    A category listed in `truncated` had more items than the limit; the newest are kept.
    """

    patient: str
    included: list[str]
    demographics: Demographics | None = None
    vital_signs: list[VitalSign] = msgspec.field(default_factory=list)
    conditions: list[ConditionItem] = msgspec.field(default_factory=list)
    medications: list[MedicationItem] = msgspec.field(default_factory=list)
    immunizations: list[ImmunizationItem] = msgspec.field(default_factory=list)
    allergies: list[AllergyItem] = msgspec.field(default_factory=list)
    encounters: list[EncounterItem] = msgspec.field(default_factory=list)
    truncated: list[str] = msgspec.field(default_factory=list)


def record_view(
    engine: Engine,
    patient_id: str,
    categories: Iterable[str],
    *,
    windows: Mapping[str, Sequence[DateWindow]] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> RecordView:
    """Summaries of one patient's record in the given categories.

    `windows` restricts a category to resources whose clinical date falls in one of its
    windows (resources without a date are then left out); a category absent from it is
    not restricted. An unknown patient gives an empty view, like a patient with no data.
    """
    wanted = _checked(categories)
    view = RecordView(patient=patient_id, included=list(wanted))
    with Session(engine) as session:
        for category in wanted:
            spans = None if windows is None else windows.get(category)
            rows = _rows(session, patient_id, category, spans, limit + 1)
            if len(rows) > limit:
                view.truncated.append(category)
            _fill(view, category, [row.body for row in rows[:limit]])
    return view


def _checked(categories: Iterable[str]) -> tuple[Category, ...]:
    asked = set(categories)
    unknown = asked.difference(CATEGORIES)
    if unknown:
        raise UnknownCategoryError(f"unknown categories: {', '.join(sorted(unknown))}")
    return tuple(c for c in CATEGORIES if c in asked)


def _rows(
    session: Session,
    patient_id: str,
    category: str,
    spans: Sequence[DateWindow] | None,
    limit: int,
) -> list[RecordRow]:
    query = (
        select(RecordRow)
        .where(RecordRow.patient_id == patient_id, RecordRow.category == category)
        .where(_in_windows(spans))
        .order_by(RecordRow.effective_ms.desc().nulls_last(), RecordRow.resource_id)
        .limit(limit)
    )
    return list(session.scalars(query))


def _in_windows(spans: Sequence[DateWindow] | None) -> ColumnElement[bool]:
    if spans is None:
        return true()
    col = RecordRow.effective_ms
    clauses = [
        and_(
            col.is_not(None),
            true() if span.start_ms is None else col >= span.start_ms,
            true() if span.end_ms is None else col < span.end_ms,
        )
        for span in spans
    ]
    return or_(false(), *clauses)


def _fill(view: RecordView, category: Category, bodies: list[dict[str, Any]]) -> None:
    if category == "demographics":
        view.demographics = _demographics(bodies[0]) if bodies else None
    elif category == "vital_signs":
        view.vital_signs = [_vital(b) for b in bodies]
    elif category == "conditions":
        view.conditions = [_condition(b) for b in bodies]
    elif category == "medications":
        view.medications = [_medication(b) for b in bodies]
    elif category == "immunizations":
        view.immunizations = [_immunization(b) for b in bodies]
    elif category == "allergies":
        view.allergies = [_allergy(b) for b in bodies]
    else:
        view.encounters = [_encounter(b) for b in bodies]


# ---------------------------------------------------------------- summaries
#
# Bodies were validated on import, so fields have their FHIR types; the helpers still
# tolerate absent fields, since almost everything in FHIR is optional.


def _demographics(body: dict[str, Any]) -> Demographics:
    deceased = body.get("deceasedBoolean") is True or "deceasedDateTime" in body
    return Demographics(
        name=_human_name(body.get("name") or []),
        gender=body.get("gender"),
        birth_date=body.get("birthDate"),
        deceased=deceased,
    )


def _human_name(names: list[dict[str, Any]]) -> str | None:
    chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if chosen is None:
        return None
    if chosen.get("text"):
        return str(chosen["text"])
    parts = [*chosen.get("given", []), chosen.get("family", "")]
    return " ".join(p for p in parts if p) or None


def _vital(body: dict[str, Any]) -> VitalSign:
    code, display = _concept(body.get("code"))
    value = _quantity(display, body)
    return VitalSign(
        code=code,
        display=display,
        date=clinical_date(body),
        value=value.value,
        unit=value.unit,
        text=value.text,
        components=[_quantity(_concept(c.get("code"))[1], c) for c in body.get("component", [])],
    )


def _quantity(display: str, holder: dict[str, Any]) -> Quantity:
    quantity = holder.get("valueQuantity")
    if isinstance(quantity, dict):
        unit = quantity.get("unit") or quantity.get("code")
        raw = quantity.get("value")
        number = float(raw) if isinstance(raw, int | float) else None
        return Quantity(display, number, unit)
    if "valueCodeableConcept" in holder:
        return Quantity(display, text=_concept(holder["valueCodeableConcept"])[1])
    if isinstance(holder.get("valueString"), str):
        return Quantity(display, text=holder["valueString"])
    return Quantity(display)


def _condition(body: dict[str, Any]) -> ConditionItem:
    code, display = _concept(body.get("code"))
    return ConditionItem(
        code=code,
        display=display,
        onset=clinical_date(body),
        clinical_status=_concept(body.get("clinicalStatus"))[0],
        abated=body.get("abatementDateTime"),
    )


def _medication(body: dict[str, Any]) -> MedicationItem:
    concept = body.get("medicationCodeableConcept")
    if concept is None and isinstance(body.get("medicationReference"), dict):
        concept = {"text": body["medicationReference"].get("display")}
    code, display = _concept(concept)
    dosage = body.get("dosageInstruction") or body.get("dosage") or []
    return MedicationItem(
        code=code,
        display=display,
        date=clinical_date(body),
        status=body.get("status"),
        dosage=dosage[0].get("text") if dosage else None,
    )


def _immunization(body: dict[str, Any]) -> ImmunizationItem:
    code, display = _concept(body.get("vaccineCode"))
    return ImmunizationItem(code, display, clinical_date(body), body.get("status"))


def _allergy(body: dict[str, Any]) -> AllergyItem:
    code, display = _concept(body.get("code"))
    reactions = [
        _concept(m)[1]
        for reaction in body.get("reaction", [])
        for m in reaction.get("manifestation", [])
    ]
    return AllergyItem(
        code=code,
        display=display,
        date=clinical_date(body),
        criticality=body.get("criticality"),
        clinical_status=_concept(body.get("clinicalStatus"))[0],
        reactions=reactions,
    )


def _encounter(body: dict[str, Any]) -> EncounterItem:
    kinds = body.get("type") or [None]
    period = body.get("period") or {}
    reasons = body.get("reasonCode") or [None]
    klass = body.get("class")
    return EncounterItem(
        display=_concept(kinds[0])[1],
        start=period.get("start"),
        end=period.get("end"),
        encounter_class=klass.get("code") if isinstance(klass, dict) else None,
        status=body.get("status"),
        reason=_concept(reasons[0])[1] if reasons[0] is not None else None,
    )


def _concept(concept: object) -> tuple[str | None, str]:
    """The first code of a CodeableConcept and the best text to show for it."""
    if not isinstance(concept, dict):
        return None, "(not coded)"
    codings = [c for c in concept.get("coding", []) if isinstance(c, dict)]
    code = next((c["code"] for c in codings if c.get("code")), None)
    shown = next((c["display"] for c in codings if c.get("display")), code)
    display = concept.get("text") or shown
    return code, str(display) if display else "(not coded)"
