"""Reading one FHIR R4 Bundle file into resources ready to store (sans-io).

Each resource is validated on its own with the R4B models of fhir.resources, which read
R4 content, so that an error can name the entry and the field at fault. The envelope
(bundle type, full URLs, requests) is validated separately. Nothing here touches the
database: `parse_bundle` either returns every resource of the bundle or raises
`BundleRejectedError`, which is what makes an import all-or-nothing per bundle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource

from metaworld.records.categories import Category, category_of, clinical_date
from metaworld.records.dates import fhir_datetime_ms
from metaworld.records.errors import BundleRejectedError

MAX_BUNDLE_BYTES: Final = 128 * 1024 * 1024  # bytes; Synthea bundles of long lives are ~50 MB
MAX_PROBLEM_CHARS: Final = 200
BUNDLE_TYPES: Final = frozenset({"batch", "transaction", "collection", "searchset", "document"})

# Fields through which a resource points at the patient it is about, tried in order
# (Observation.subject, Immunization.patient, Coverage.beneficiary, ...).
PATIENT_FIELDS: Final = ("subject", "patient", "beneficiary")

_PATIENT_REF: Final = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@dataclass(frozen=True, slots=True)
class ParsedResource:
    """One validated resource and what the store indexes it by."""

    resource_type: str
    resource_id: str
    patient_id: str | None
    category: Category | None
    effective_ms: int | None
    last_updated_ms: int | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    source: str
    resources: tuple[ParsedResource, ...]


def parse_bundle(data: bytes, source: str) -> ParsedBundle:
    """Validate a bundle file's bytes; `source` names the file in errors."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRejectedError(
            source, "bundle", "(file)", f"larger than {MAX_BUNDLE_BYTES} bytes"
        )
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise BundleRejectedError(source, "bundle", "(json)", _short(str(exc))) from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise BundleRejectedError(source, "bundle", "resourceType", "is not Bundle")
    entries = doc.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BundleRejectedError(source, "bundle", "entry", "must be a list of entries")

    _check_envelope(doc, entries, source)
    located = [_validate_entry(i, entry, source) for i, entry in enumerate(entries)]

    by_url: dict[str, tuple[str, str]] = {}
    seen: set[tuple[str, str]] = set()
    for entry, (rtype, rid, label) in zip(entries, located, strict=True):
        if (rtype, rid) in seen:
            raise BundleRejectedError(source, label, "id", "appears twice in this bundle")
        seen.add((rtype, rid))
        if isinstance(entry.get("fullUrl"), str):
            by_url[entry["fullUrl"]] = (rtype, rid)

    resources: list[ParsedResource] = []
    for entry, (rtype, rid, label) in zip(entries, located, strict=True):
        body = entry["resource"]
        try:
            patient = _patient_of(body, rid, by_url)
        except _UnresolvedError as exc:
            raise BundleRejectedError(source, label, exc.field, exc.problem) from None
        resources.append(_parsed(body, rtype, rid, patient))
    return ParsedBundle(source, tuple(resources))


def _check_envelope(doc: dict[str, Any], entries: list[dict[str, Any]], source: str) -> None:
    """Validate the bundle without its resources; those are validated one by one."""
    shell = dict(doc)
    shell["entry"] = [{k: v for k, v in e.items() if k != "resource"} for e in entries]
    if not shell["entry"]:
        del shell["entry"]
    try:
        Bundle.model_validate(shell)
    except pydantic.ValidationError as exc:
        loc, problem = _first_error(exc)
        if len(loc) >= 2 and loc[0] == "entry" and isinstance(loc[1], int):
            label = f"entry[{loc[1]}]"
            raise BundleRejectedError(source, label, _path(loc[2:]), problem) from None
        raise BundleRejectedError(source, "bundle", _path(loc), problem) from None
    if doc.get("type") not in BUNDLE_TYPES:
        raise BundleRejectedError(
            source, "bundle", "type", f"must be one of {sorted(BUNDLE_TYPES)}"
        )


def _validate_entry(index: int, entry: dict[str, Any], source: str) -> tuple[str, str, str]:
    """Validate one entry's resource; returns its type, id and the label errors use."""
    label = f"entry[{index}]"
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        raise BundleRejectedError(source, label, "resource", "missing; every entry must hold one")
    rtype = resource.get("resourceType")
    model = _resource_model(rtype)
    if model is None:
        raise BundleRejectedError(source, label, "resourceType", "is not a FHIR resource type")
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        label = f"{rtype}/{rid}"[:140]
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        loc, problem = _first_error(exc)
        raise BundleRejectedError(source, label, _path(loc), problem) from None
    if not isinstance(rid, str) or not rid:
        raise BundleRejectedError(
            source, label, "id", "missing; resources are keyed by type and id"
        )
    return str(rtype), rid, label


def _resource_model(rtype: object) -> type[Resource] | None:
    if not isinstance(rtype, str) or not rtype.isalpha() or not rtype[:1].isupper():
        return None
    try:
        model = get_fhir_model_class(rtype)
    except ValueError:
        return None
    if not issubclass(model, Resource) or rtype in ("Resource", "DomainResource"):
        return None
    return model


def _patient_of(
    resource: dict[str, Any], rid: str, by_url: Mapping[str, tuple[str, str]]
) -> str | None:
    """The id of the patient a resource is about, resolving bundle-local references."""
    if resource["resourceType"] == "Patient":
        return rid
    for field in PATIENT_FIELDS:
        ref = resource.get(field)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return _resolve_patient(ref["reference"], by_url, f"{field}.reference")
    return None


def _resolve_patient(
    reference: str, by_url: Mapping[str, tuple[str, str]], field: str
) -> str | None:
    target = by_url.get(reference)
    if target is not None:
        return target[1] if target[0] == "Patient" else None
    if reference.startswith("urn:"):
        raise _UnresolvedError(field, "points to no entry of this bundle")
    if reference.startswith("Patient?"):
        raise _UnresolvedError(field, "conditional references to a patient are not supported")
    match = _PATIENT_REF.search(reference)
    return match.group(1) if match else None


class _UnresolvedError(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _parsed(body: dict[str, Any], rtype: str, rid: str, patient: str | None) -> ParsedResource:
    meta = body.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return ParsedResource(
        resource_type=rtype,
        resource_id=rid,
        patient_id=patient,
        category=category_of(body),
        effective_ms=fhir_datetime_ms(clinical_date(body)),
        last_updated_ms=fhir_datetime_ms(updated),
        body=body,
    )


def _first_error(exc: pydantic.ValidationError) -> tuple[tuple[int | str, ...], str]:
    # Only the location and pydantic's message: its `input` may hold record content.
    error = exc.errors(include_url=False, include_input=False)[0]
    return tuple(error["loc"]), _short(error["msg"])


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = "resourceType" if part == "resource_type" else part
            path += f".{name}" if path else name
    return path or "(resource)"


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:MAX_PROBLEM_CHARS]
