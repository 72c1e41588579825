"""Consent documents, shaped after FHIR R4 Consent, and their validation.

A consent says, for one patient, who may do what with which part of the record and for
which purpose. Its `provision` is a tree: the root's `type` is the base decision for the
requests the root matches, and a nested provision that matches a request flips the
decision inside its parent's scope (see :mod:`metaworld.consent.evaluate`).

The JSON form uses FHIR's field names (``class``, ``dataPeriod``, ``dateTime``, nested
``provision``). Code fields are plain strings on purpose: `validate_consent` checks them
against the vocabularies of :mod:`metaworld.consent.codes` and raises a named error, the
same whether the consent came from JSON, from FHIR or from Python code.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Final

import msgspec

from metaworld.consent import codes
from metaworld.consent.errors import (
    DuplicateActorError,
    MalformedConsentError,
    NestingTooDeepError,
    ReversedPeriodError,
    UnknownCodeError,
)
from metaworld.roles import ROLES

MAX_DEPTH: Final = 8  # levels of provisions, the root being level 1
MAX_PROVISIONS: Final = 128  # provisions in one consent, all levels together
MAX_LIST: Final = 32  # entries in any one list of a provision (actors, purposes, ...)
MAX_CONSENT_BYTES: Final = 64 * 1024  # bytes of JSON accepted by `decode_consent`
MAX_REFERENCE_CHARS: Final = 255  # an actor reference is a token subject

# FHIR `id` datatype; our consent and patient ids must be usable in URLs and ledgers.
_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class Period(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A time span; an absent end is open. Times must carry a zone."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None


class Actor(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Who a provision is about: everyone in `role`, or one person (`reference`, a token
    subject) in that role."""

    role: str
    reference: str | None = None


class Provision(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, rename="camel"
):
    """One rule. Empty lists mean "any" (see evaluate for the exceptions)."""

    type: str
    period: Period | None = None
    actor: list[Actor] = msgspec.field(default_factory=list)
    action: list[str] = msgspec.field(default_factory=list)
    purpose: list[str] = msgspec.field(default_factory=list)
    data_class: list[str] = msgspec.field(default_factory=list, name="class")
    data_period: Period | None = None
    provision: list[Provision] = msgspec.field(default_factory=list)


class Consent(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, rename="camel"
):
    """A patient's consent directive; only `active` ones within `period` count."""

    id: str
    patient: str
    status: str
    provision: Provision
    scope: str = "patient-privacy"
    category: list[str] = msgspec.field(default_factory=lambda: ["59284-0"])
    period: Period | None = None
    date_time: dt.datetime | None = None


_decoder = msgspec.json.Decoder(Consent)


def decode_consent(data: bytes | str) -> Consent:
    """Read a consent from JSON and validate it; raises an `InvalidConsentError` subclass."""
    if len(data) > MAX_CONSENT_BYTES:
        raise MalformedConsentError("", f"larger than {MAX_CONSENT_BYTES} bytes")
    try:
        consent = _decoder.decode(data)
    except RecursionError:
        raise NestingTooDeepError("provision", f"nested deeper than {MAX_DEPTH} levels") from None
    except msgspec.ValidationError as exc:
        raise MalformedConsentError("", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise MalformedConsentError("", f"not JSON: {exc}") from None
    return validate_consent(consent)


def encode_consent(consent: Consent) -> bytes:
    return msgspec.json.encode(consent)


def validate_consent(consent: Consent) -> Consent:
    """Check every code, period, nesting limit and actor list; returns the consent."""
    _check_id("id", consent.id)
    _check_id("patient", consent.patient)
    _check_code("status", consent.status, codes.STATUSES)
    _check_code("scope", consent.scope, codes.SCOPES)
    if not consent.category or len(consent.category) > MAX_LIST:
        raise MalformedConsentError("category", f"needs 1 to {MAX_LIST} codes")
    for i, code in enumerate(consent.category):
        _check_code(f"category[{i}]", code, codes.CONSENT_CATEGORIES)
    _check_period("period", consent.period)
    _check_time("dateTime", consent.date_time)

    for count, (path, depth, provision) in enumerate(walk_provisions(consent.provision), 1):
        if depth > MAX_DEPTH:
            raise NestingTooDeepError(path, f"nested deeper than {MAX_DEPTH} levels")
        if count > MAX_PROVISIONS:
            raise NestingTooDeepError(path, f"more than {MAX_PROVISIONS} provisions")
        _check_provision(path, provision)
    return consent


def walk_provisions(root: Provision) -> Iterator[tuple[str, int, Provision]]:
    """Every provision with its path and depth (root: ``provision``, 1), depth first."""
    stack = [("provision", 1, root)]
    while stack:
        path, depth, provision = stack.pop()
        yield path, depth, provision
        # Deeper levels are not walked: validation stops at the first too-deep one.
        if depth <= MAX_DEPTH:
            children = enumerate(provision.provision)
            stack.extend((f"{path}.provision[{i}]", depth + 1, p) for i, p in children)


def _check_provision(path: str, provision: Provision) -> None:
    _check_code(f"{path}.type", provision.type, codes.PROVISION_TYPES)
    _check_period(f"{path}.period", provision.period)
    _check_period(f"{path}.dataPeriod", provision.data_period)
    lists: dict[str, list[str]] = {
        "action": provision.action,
        "purpose": provision.purpose,
        "class": provision.data_class,
    }
    vocabularies = {
        "action": codes.ACTIONS,
        "purpose": codes.PURPOSES,
        "class": codes.DATA_CLASSES,
    }
    for name, values in lists.items():
        if len(values) > MAX_LIST:
            raise MalformedConsentError(f"{path}.{name}", f"more than {MAX_LIST} entries")
        for i, code in enumerate(values):
            _check_code(f"{path}.{name}[{i}]", code, vocabularies[name])
    _check_actors(f"{path}.actor", provision.actor)


def _check_actors(path: str, actors: list[Actor]) -> None:
    if len(actors) > MAX_LIST:
        raise MalformedConsentError(path, f"more than {MAX_LIST} actors")
    # A person is one actor however often named; a role without a person is one actor.
    seen: set[tuple[str, str]] = set()
    for i, actor in enumerate(actors):
        _check_code(f"{path}[{i}].role", actor.role, frozenset(ROLES))
        ref = actor.reference
        if ref is not None and not 0 < len(ref) <= MAX_REFERENCE_CHARS:
            raise MalformedConsentError(f"{path}[{i}].reference", "must be a token subject")
        key = ("person", ref) if ref is not None else ("role", actor.role)
        if key in seen:
            raise DuplicateActorError(f"{path}[{i}]", "the same actor is named twice")
        seen.add(key)


def _check_id(path: str, value: str) -> None:
    if not _FHIR_ID.fullmatch(value):
        raise MalformedConsentError(path, "must be 1-64 letters, digits, '-' or '.'")


def _check_code(path: str, code: str, known: frozenset[str]) -> None:
    if code not in known:
        listing = ", ".join(sorted(known)) if len(known) <= 12 else f"{len(known)} codes"
        raise UnknownCodeError(path, code, listing)


def _check_time(path: str, moment: dt.datetime | None) -> None:
    if moment is not None and moment.utcoffset() is None:
        raise MalformedConsentError(path, "a time needs a zone (Z or +hh:mm)")


def _check_period(path: str, period: Period | None) -> None:
    if period is None:
        return
    _check_time(f"{path}.start", period.start)
    _check_time(f"{path}.end", period.end)
    if period.start is not None and period.end is not None and period.end <= period.start:
        raise ReversedPeriodError(path, "ends before (or when) it starts")
