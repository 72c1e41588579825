"""Reading a FHIR R4 Consent resource into our `Consent`.

The resource is validated with the R4B models of fhir.resources, then converted field by
field and validated again as ours, so an unknown code fails the same way as in our own
JSON. Codes are read from the first coding of each concept, whatever its system; actor
roles must be metaworld role codes. Provision fields we cannot enforce (``code``,
``data``, ``securityLabel``) are refused rather than ignored: ignoring a restriction
would widen a permit. Partial dates and times without a zone are read as UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec
import pydantic
from fhir.resources.R4B.consent import Consent as FhirConsent

from metaworld.consent.errors import MalformedConsentError, NestingTooDeepError
from metaworld.consent.model import (
    MAX_CONSENT_BYTES,
    MAX_DEPTH,
    Actor,
    Consent,
    Period,
    Provision,
    validate_consent,
)
from metaworld.records.dates import fhir_datetime_ms

_UNENFORCEABLE: Final = ("code", "data", "securityLabel")
_PATIENT_REF: Final = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})$")


def consent_from_fhir(resource: Mapping[str, Any] | bytes | str) -> Consent:
    """Our consent from a FHIR Consent resource (a dict or its JSON)."""
    if isinstance(resource, bytes | str):
        if len(resource) > MAX_CONSENT_BYTES:
            raise MalformedConsentError("", f"larger than {MAX_CONSENT_BYTES} bytes")
        try:
            resource = msgspec.json.decode(resource)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise MalformedConsentError("", f"not JSON: {exc}") from None
    if not isinstance(resource, Mapping):
        raise MalformedConsentError("", "not a JSON object")
    try:
        FhirConsent.model_validate(dict(resource))
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        path = ".".join(str(part) for part in error["loc"])
        raise MalformedConsentError(path, error["msg"]) from None
    except RecursionError:
        raise NestingTooDeepError("provision", f"nested deeper than {MAX_DEPTH} levels") from None

    if "provision" not in resource:
        raise MalformedConsentError("provision", "a consent needs a provision")
    consent = Consent(
        id=str(resource.get("id") or ""),
        patient=_patient_id(resource.get("patient")),
        status=str(resource.get("status")),
        provision=_provision("provision", resource["provision"], depth=1),
        scope=_code(resource.get("scope")) or "",
        category=[_code(c) or "" for c in resource.get("category", [])],
        period=_period("period", resource.get("period")),
        date_time=_time("dateTime", resource.get("dateTime")),
    )
    return validate_consent(consent)


def _provision(path: str, raw: Mapping[str, Any], *, depth: int) -> Provision:
    for name in _UNENFORCEABLE:
        if name in raw:
            raise MalformedConsentError(f"{path}.{name}", "cannot be enforced here")
    if depth > MAX_DEPTH:
        raise NestingTooDeepError(path, f"nested deeper than {MAX_DEPTH} levels")
    return Provision(
        type=str(raw.get("type", "")),
        period=_period(f"{path}.period", raw.get("period")),
        actor=[_actor(a) for a in raw.get("actor", [])],
        action=[_code(a) or "" for a in raw.get("action", [])],
        purpose=[str(p.get("code", "")) for p in raw.get("purpose", [])],
        data_class=[str(c.get("code", "")) for c in raw.get("class", [])],
        data_period=_period(f"{path}.dataPeriod", raw.get("dataPeriod")),
        provision=[
            _provision(f"{path}.provision[{i}]", p, depth=depth + 1)
            for i, p in enumerate(raw.get("provision", []))
        ],
    )


def _actor(raw: Mapping[str, Any]) -> Actor:
    reference = (raw.get("reference") or {}).get("reference")
    return Actor(role=_code(raw.get("role")) or "", reference=reference)


def _patient_id(raw: object) -> str:
    reference = raw.get("reference") if isinstance(raw, Mapping) else None
    match = _PATIENT_REF.search(reference) if isinstance(reference, str) else None
    if match is None:
        raise MalformedConsentError("patient", "must reference Patient/<id>")
    return match.group(1)


def _code(concept: object) -> str | None:
    if not isinstance(concept, Mapping):
        return None
    for coding in concept.get("coding", []):
        if isinstance(coding, Mapping) and coding.get("code"):
            return str(coding["code"])
    return None


def _period(path: str, raw: object) -> Period | None:
    if not isinstance(raw, Mapping):
        return None
    return Period(_time(f"{path}.start", raw.get("start")), _time(f"{path}.end", raw.get("end")))


def _time(path: str, raw: object) -> dt.datetime | None:
    if raw is None:
        return None
    ms = fhir_datetime_ms(raw)
    if ms is None:
        raise MalformedConsentError(path, "not a FHIR dateTime")
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
