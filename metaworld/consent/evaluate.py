"""Deciding an access request from consents, the role policy and token scopes (sans-io).

Theory of operation. A request asks for some record categories of one patient, for a
purpose. Each category is decided on its own, by checks that can only narrow:

1. role: the purpose must be one the role may act under and the category one the role
   may ever see (:mod:`metaworld.consent.policy`); a patient sees only the patient of
   the token's launch context, and needs no consent for it;
2. scope: the token's SMART scopes must open the category (:mod:`.scopes`);
3. supervision: a trainee's request must name a supervising clinician;
4. break-the-glass: a clinician's live emergency grant permits, for purpose ETREAT;
5. consent: otherwise the patient's consents decide.

Consent semantics. Only ``active`` consents whose period holds `now` count; a
``research``-scope consent speaks only to research purposes. A provision *matches* a
request when its period holds `now` and each of its lists is empty or contains the
request's value (actor by role and, if given, token subject; action; purpose; class).
Two asymmetries keep a provision from saying more than it says: an empty purpose list
covers research and marketing only in a deny; and a class naming some resource types of
a category matches that category only in a deny (a permit must name all of them, or
the category). The root's type is the decision for the requests the root matches, over
its data period; a matching nested provision flips the decision within its parent's
data period, recursively. Siblings apply permits first, then denies, so a deny wins
over an overlapping sibling permit whatever their order in the document.

Each consent thus yields the data time it permits and the data time it denies. Across
consents, a deny wins: the category is permitted over (union of permits) minus (union
of denies). No applicable consent means deny. Denies from consent use one reason,
``not-permitted``, whether the patient is unknown, has no consent or has refused, so a
deny never tells whether a record exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Literal

import msgspec

from metaworld.consent import codes, spans
from metaworld.consent.errors import InvalidRequestError, ScopeError
from metaworld.consent.model import MAX_REFERENCE_CHARS, Consent, Period, Provision
from metaworld.consent.policy import ROLE_POLICY
from metaworld.consent.scopes import allowed_categories
from metaworld.records.categories import CATEGORIES, CATEGORY_RULES, Category
from metaworld.records.view import DateWindow
from metaworld.roles import ROLES, Role

Outcome = Literal["permit", "deny"]
Reason = Literal[
    "consent",  # permitted by the patient's consent
    "own-record",  # a patient viewing their own record
    "break-glass",  # a clinician's emergency override, flagged for review
    "not-permitted",  # no consent permits it (or no such patient: indistinguishable)
    "scope",  # the token's scopes do not open the category
    "role",  # the role may not see this category, for this purpose, or this patient
    "supervision",  # a trainee without a supervising clinician
    "setting",  # not together with the patient in a clinical room, as the world sees it
]
MAX_CATEGORIES: Final = len(CATEGORIES)
_PERMIT_REASONS: Final[tuple[Reason, ...]] = ("break-glass", "own-record", "consent")


class AccessRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who asks for what of whose record, and why. Built by the world server from a
    verified token; the decision's time comes from the service's clock, not from here.

    `launch_patient` is the patient of the token's SMART launch context (for a patient,
    themself). `supervisor` is the token subject of a clinician supervising a trainee in
    the same room, as the world server sees it. `co_located` is the world server's word
    that the requester stands with the patient in a consultation or therapy room; when it
    is false the request is still decided (and audited) but denied for staff.
    """

    actor: str
    role: Role
    patient: str
    categories: list[str]
    purpose: str = "TREAT"
    action: str = "access"
    scopes: list[str] = msgspec.field(default_factory=list)
    launch_patient: str | None = None
    supervisor: str | None = None
    room: str | None = None
    co_located: bool = True


class CategoryDecision(msgspec.Struct, frozen=True, omit_defaults=True):
    """`windows` is None when every date is permitted, else the permitted date spans."""

    category: str
    outcome: Outcome
    reason: Reason
    windows: list[DateWindow] | None = None


class Decision(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to one request. `outcome` is permit if any category is permitted.

    `consent_version` names the consents that permitted (``Consent/<id>/_history/<n>``,
    or ``BreakGlass/<id>``); it is None on a deny, which must not reveal a consent.
    """

    outcome: Outcome
    reason: Reason
    categories: list[CategoryDecision]
    consent_version: str | None = None
    review: bool = False

    def permitted(self) -> list[str]:
        return [c.category for c in self.categories if c.outcome == "permit"]

    def denied(self) -> list[str]:
        return [c.category for c in self.categories if c.outcome == "deny"]

    def windows(self) -> dict[str, list[DateWindow]]:
        """Date windows of the permitted categories that are restricted in time."""
        return {
            c.category: c.windows
            for c in self.categories
            if c.outcome == "permit" and c.windows is not None
        }


class StoredConsent(msgspec.Struct, frozen=True):
    """A consent as the store holds it: one version of it."""

    consent: Consent
    version: int

    @property
    def ref(self) -> str:
        return f"Consent/{self.consent.id}/_history/{self.version}"


class BreakGlassGrant(msgspec.Struct, frozen=True):
    """An emergency override: `actor` may see `patient` for ETREAT until `end_ms`."""

    id: str
    actor: str
    role: Role
    patient: str
    start_ms: int
    end_ms: int
    room: str | None = None

    @property
    def ref(self) -> str:
        return f"BreakGlass/{self.id}"

    def live(self, now_ms: int) -> bool:
        return self.start_ms <= now_ms < self.end_ms


class Evaluation(msgspec.Struct, frozen=True):
    """A decision plus what only the audit ledger may know: per category, the consents
    or grant that decided it, permit or deny."""

    decision: Decision
    deciding: dict[str, list[str]]

    def versions(self, categories: Iterable[str]) -> str | None:
        """The deciding references of some categories, as one ledger field."""
        return _joined(self.deciding, categories)


def _joined(deciding: dict[str, list[str]], categories: Iterable[str]) -> str | None:
    refs = {ref for category in categories for ref in deciding.get(category, ())}
    return ";".join(sorted(refs)) or None


def decide(
    consents: Iterable[StoredConsent],
    request: AccessRequest,
    now_ms: int,
    *,
    grants: Iterable[BreakGlassGrant] = (),
) -> Decision:
    """Decide `request` at `now_ms` (see the module docstring for the rules)."""
    return evaluate(consents, request, now_ms, grants=grants).decision


def evaluate(
    consents: Iterable[StoredConsent],
    request: AccessRequest,
    now_ms: int,
    *,
    grants: Iterable[BreakGlassGrant] = (),
) -> Evaluation:
    """`decide`, keeping the deciding consents for the ledger."""
    check_request(request)
    asked = [c for c in CATEGORIES if c in request.categories]
    live = [
        stored
        for stored in consents
        if stored.consent.patient == request.patient and _consent_counts(stored, request, now_ms)
    ]
    grant = next((g for g in grants if _grant_covers(g, request, now_ms)), None)
    scoped = _scoped(request)

    results: list[CategoryDecision] = []
    deciding: dict[str, list[str]] = {}
    for category in asked:
        decision, refs = _decide_category(
            category, request, now_ms, consents=live, grant=grant, scoped=scoped
        )
        results.append(decision)
        deciding[category] = refs

    permits = [c for c in results if c.outcome == "permit"]
    if permits:
        reasons = {c.reason for c in permits}
        reason: Reason = next(r for r in _PERMIT_REASONS if r in reasons)
        version = _joined(deciding, [c.category for c in permits])
        public = Decision("permit", reason, results, version, review=reason == "break-glass")
        return Evaluation(public, deciding)
    reasons = {c.reason for c in results}
    reason = reasons.pop() if len(reasons) == 1 else "not-permitted"
    return Evaluation(Decision("deny", reason, results), deciding)


def check_request(request: AccessRequest) -> None:
    """Raise `InvalidRequestError` for a request no decision should be made on."""
    if request.role not in ROLES:
        raise InvalidRequestError(f"unknown role {request.role!r}")
    if not 0 < len(request.actor) <= MAX_REFERENCE_CHARS:
        raise InvalidRequestError("actor must be a token subject of 1-255 characters")
    if not 0 < len(request.patient) <= 64:
        raise InvalidRequestError("patient must be an id of 1-64 characters")
    if not request.categories or len(request.categories) > MAX_CATEGORIES:
        raise InvalidRequestError(f"ask for 1 to {MAX_CATEGORIES} categories")
    unknown = set(request.categories).difference(CATEGORIES)
    if unknown:
        raise InvalidRequestError(f"unknown categories: {', '.join(sorted(unknown))[:200]}")
    if request.purpose not in codes.PURPOSES:
        raise InvalidRequestError(f"unknown purpose {request.purpose[:32]!r}")
    if request.action not in codes.ACTIONS:
        raise InvalidRequestError(f"unknown action {request.action[:32]!r}")


# ---------------------------------------------------------------- one category


def _decide_category(
    category: Category,
    request: AccessRequest,
    now_ms: int,
    *,
    consents: Sequence[StoredConsent],
    grant: BreakGlassGrant | None,
    scoped: frozenset[Category],
) -> tuple[CategoryDecision, list[str]]:
    policy = ROLE_POLICY[request.role]
    if request.purpose not in policy.purposes or category not in policy.categories:
        return _deny(category, "role"), []
    if policy.own_record_only and request.launch_patient != request.patient:
        return _deny(category, "role"), []
    if category not in scoped:
        return _deny(category, "scope"), []
    if policy.own_record_only:
        return CategoryDecision(category, "permit", "own-record"), []
    if not request.co_located:
        return _deny(category, "setting"), []
    if policy.needs_supervisor and not request.supervisor:
        return _deny(category, "supervision"), []
    if grant is not None and policy.may_break_glass:
        return CategoryDecision(category, "permit", "break-glass"), [grant.ref]

    permitted, denied = spans.EMPTY, spans.EMPTY
    refs = []
    for stored in consents:
        permit, deny = consent_spans(stored.consent, request, category, now_ms)
        if permit or deny:
            refs.append(stored.ref)
        permitted, denied = spans.union(permitted, permit), spans.union(denied, deny)
    allowed = spans.subtract(permitted, denied)
    if not allowed:
        return _deny(category, "not-permitted"), refs
    windows = None if allowed == spans.ALL else spans.windows(allowed)
    return CategoryDecision(category, "permit", "consent", windows), refs


def _deny(category: Category, reason: Reason) -> CategoryDecision:
    return CategoryDecision(category, "deny", reason)


def _scoped(request: AccessRequest) -> frozenset[Category]:
    try:
        return allowed_categories(
            request.scopes,
            request.categories,
            in_patient_context=request.launch_patient == request.patient,
        )
    except ScopeError:
        # A malformed scope opens nothing; the request is still decided (and audited).
        return frozenset()


def _consent_counts(stored: StoredConsent, request: AccessRequest, now_ms: int) -> bool:
    consent = stored.consent
    if consent.status != "active" or not _period_holds(consent.period, now_ms):
        return False
    return consent.scope != "research" or request.purpose in codes.RESEARCH_PURPOSES


def _grant_covers(grant: BreakGlassGrant, request: AccessRequest, now_ms: int) -> bool:
    return (
        request.purpose == "ETREAT"
        and grant.actor == request.actor
        and grant.role == request.role
        and grant.patient == request.patient
        and grant.live(now_ms)
    )


# ---------------------------------------------------------------- provisions


def consent_spans(
    consent: Consent, request: AccessRequest, category: Category, now_ms: int
) -> tuple[spans.Spans, spans.Spans]:
    """The data time one consent permits and denies for `category`; both empty when
    the root does not match the request."""
    root = consent.provision
    if not provision_matches(root, request, category, now_ms):
        return spans.EMPTY, spans.EMPTY
    scope = _data_spans(root.data_period, spans.ALL)
    if root.type == "permit":
        return _apply_children(
            root, request, category, now_ms, scope=scope, permit=scope, deny=spans.EMPTY
        )
    return _apply_children(
        root, request, category, now_ms, scope=scope, permit=spans.EMPTY, deny=scope
    )


def _apply_children(
    parent: Provision,
    request: AccessRequest,
    category: Category,
    now_ms: int,
    *,
    scope: spans.Spans,
    permit: spans.Spans,
    deny: spans.Spans,
) -> tuple[spans.Spans, spans.Spans]:
    # Depth is bounded by validation (MAX_DEPTH), so recursion is shallow.
    for child in sorted(parent.provision, key=lambda p: p.type == "deny"):
        if not provision_matches(child, request, category, now_ms):
            continue
        inner = _data_spans(child.data_period, scope)
        if child.type == "permit":
            permit, deny = spans.union(permit, inner), spans.subtract(deny, inner)
        else:
            permit, deny = spans.subtract(permit, inner), spans.union(deny, inner)
        permit, deny = _apply_children(
            child, request, category, now_ms, scope=inner, permit=permit, deny=deny
        )
    return permit, deny


def provision_matches(
    provision: Provision, request: AccessRequest, category: Category, now_ms: int
) -> bool:
    """Whether one provision (not its children) speaks to this request and category."""
    is_deny = provision.type == "deny"
    if not _period_holds(provision.period, now_ms):
        return False
    if provision.actor and not any(
        actor.role == request.role and actor.reference in (None, request.actor)
        for actor in provision.actor
    ):
        return False
    if provision.action and request.action not in provision.action:
        return False
    if provision.purpose:
        if request.purpose not in provision.purpose:
            return False
    elif request.purpose in codes.EXPLICIT_PURPOSES and not is_deny:
        return False
    return not provision.data_class or _class_covers(provision.data_class, category, is_deny)


def _class_covers(classes: list[str], category: Category, is_deny: bool) -> bool:
    if category in classes:
        return True
    types = CATEGORY_RULES[category].resource_types
    named = [t in classes for t in types]
    return any(named) if is_deny else all(named)


def _data_spans(period: Period | None, scope: spans.Spans) -> spans.Spans:
    if period is None:
        return scope
    return spans.intersect(scope, spans.span(period.start, period.end))


def _period_holds(period: Period | None, now_ms: int) -> bool:
    return period is None or spans.contains(spans.span(period.start, period.end), now_ms)
