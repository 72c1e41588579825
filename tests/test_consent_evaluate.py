"""Consent evaluation (sans-io): provision semantics, periods, status, role policy."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaworld.consent import (
    AccessRequest,
    Actor,
    BreakGlassGrant,
    Consent,
    InvalidRequestError,
    Period,
    Provision,
    StoredConsent,
    decide,
    evaluate,
)
from metaworld.consent import spans as sp
from metaworld.consent.policy import ROLE_POLICY
from metaworld.records import CATEGORIES, DateWindow
from metaworld.roles import ROLES

UTC = dt.UTC
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
PATIENT = "p-1"


def at(year: int, month: int = 1, day: int = 1) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=UTC)


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def consent(provision: Provision, version: int = 1, **fields: Any) -> StoredConsent:
    values: dict[str, Any] = {"id": "c-1", "patient": PATIENT, "status": "active"}
    values.update(fields)
    return StoredConsent(Consent(provision=provision, **values), version)


def request(**fields: Any) -> AccessRequest:
    values: dict[str, Any] = {
        "actor": "dr-1",
        "role": "clinician",
        "patient": PATIENT,
        "categories": list(CATEGORIES),
        "scopes": ["user/*.rs"],
    }
    values.update(fields)
    return AccessRequest(**values)


def outcomes(consents: list[StoredConsent], req: AccessRequest) -> dict[str, str]:
    decision = decide(consents, req, NOW_MS)
    return {c.category: c.outcome for c in decision.categories}


def permitted(consents: list[StoredConsent], req: AccessRequest) -> set[str]:
    return set(decide(consents, req, NOW_MS).permitted())


PERMIT_ALL = Provision(type="permit")
EVERYTHING = set(CATEGORIES)


# ---------------------------------------------------------------- base rules


def test_no_consent_means_deny() -> None:
    decision = decide([], request(), NOW_MS)
    assert decision.outcome == "deny"
    assert decision.reason == "not-permitted"
    assert decision.consent_version is None


def test_root_permit_is_the_base_decision() -> None:
    decision = decide([consent(PERMIT_ALL, version=3)], request(), NOW_MS)
    assert decision.outcome == "permit"
    assert decision.reason == "consent"
    assert decision.consent_version == "Consent/c-1/_history/3"
    assert set(decision.permitted()) == EVERYTHING
    assert decision.windows() == {}


def test_root_deny_is_the_base_decision() -> None:
    assert permitted([consent(Provision(type="deny"))], request()) == set()


def test_root_that_does_not_match_leaves_the_consent_silent() -> None:
    only_vitals = Provision(type="permit", data_class=["vital_signs"])
    assert permitted([consent(only_vitals)], request()) == {"vital_signs"}


def test_nested_deny_flips_a_permit_for_its_actor_and_class() -> None:
    root = Provision(
        type="permit",
        provision=[Provision(type="deny", actor=[Actor("therapist")], data_class=["conditions"])],
    )
    assert permitted([consent(root)], request()) == EVERYTHING
    therapist = request(role="therapist", actor="th-1")
    assert permitted([consent(root)], therapist) == EVERYTHING - {"conditions"}


def test_nested_permit_flips_a_deny_for_one_person() -> None:
    root = Provision(
        type="deny", provision=[Provision(type="permit", actor=[Actor("clinician", "dr-7")])]
    )
    assert permitted([consent(root)], request(actor="dr-7")) == EVERYTHING
    assert permitted([consent(root)], request(actor="dr-8")) == set()


def test_flips_recurse_through_levels() -> None:
    # permit all; deny conditions to therapists; except therapist th-1 (their own patient).
    root = Provision(
        type="permit",
        provision=[
            Provision(
                type="deny",
                actor=[Actor("therapist")],
                data_class=["Condition"],
                provision=[Provision(type="permit", actor=[Actor("therapist", "th-1")])],
            )
        ],
    )
    assert "conditions" in permitted([consent(root)], request(role="therapist", actor="th-1"))
    assert "conditions" not in permitted([consent(root)], request(role="therapist", actor="th-2"))


def test_nested_provision_is_read_only_when_its_parent_matches() -> None:
    root = Provision(
        type="deny",
        actor=[Actor("researcher")],
        provision=[Provision(type="permit")],  # would permit anyone, but sits under researcher
    )
    assert permitted([consent(root)], request()) == set()


def test_sibling_deny_wins_whatever_the_order() -> None:
    permit = Provision(type="permit", data_class=["conditions"])
    deny = Provision(type="deny", data_class=["conditions"])
    for children in ([permit, deny], [deny, permit]):
        root = Provision(type="permit", provision=children)
        assert "conditions" not in permitted([consent(root)], request())


def test_deny_in_one_consent_wins_over_permit_in_another() -> None:
    permit = consent(PERMIT_ALL)
    refuse = consent(Provision(type="deny", data_class=["allergies"]), id="c-2")
    assert permitted([permit, refuse], request()) == EVERYTHING - {"allergies"}


def test_actions_must_match() -> None:
    root = Provision(type="permit", action=["access"])
    assert permitted([consent(root)], request()) == EVERYTHING
    assert permitted([consent(root)], request(action="disclose")) == set()


def test_resource_type_class_asymmetry() -> None:
    # Naming one of medications' two types permits nothing of it but denies all of it.
    assert (
        permitted([consent(Provision(type="permit", data_class=["MedicationRequest"]))], request())
        == set()
    )
    root = Provision(
        type="permit", provision=[Provision(type="deny", data_class=["MedicationStatement"])]
    )
    assert "medications" not in permitted([consent(root)], request())
    both = Provision(type="permit", data_class=["MedicationRequest", "MedicationStatement"])
    assert permitted([consent(both)], request()) == {"medications"}


# ---------------------------------------------------------------- status and periods


@pytest.mark.parametrize(
    "status", ["draft", "proposed", "rejected", "inactive", "entered-in-error"]
)
def test_only_active_consents_count(status: str) -> None:
    assert permitted([consent(PERMIT_ALL, status=status)], request()) == set()


@pytest.mark.parametrize(
    ("period", "counts"),
    [
        (Period(at(2025), at(2026)), True),
        (Period(at(2020), at(2025, 6, 1)), False),  # ended before now
        (Period(at(2026), None), False),  # not started
        (Period(None, at(2030)), True),
        (Period(NOW, None), True),  # the start is inside
        (Period(None, NOW), False),  # the end is outside
    ],
)
def test_consent_period_must_hold_now(period: Period, counts: bool) -> None:
    assert bool(permitted([consent(PERMIT_ALL, period=period)], request())) is counts


def test_provision_period_limits_when_a_rule_applies() -> None:
    expired_deny = Provision(type="deny", period=Period(at(2020), at(2021)))
    root = Provision(type="permit", provision=[expired_deny])
    assert permitted([consent(root)], request()) == EVERYTHING


def test_data_period_restricts_the_data_not_the_request() -> None:
    root = Provision(type="permit", data_period=Period(at(2019), at(2021)))
    decision = decide([consent(root)], request(categories=["encounters"]), NOW_MS)
    assert decision.windows() == {"encounters": [DateWindow(ms(at(2019)), ms(at(2021)))]}


def test_nested_deny_of_a_data_period_cuts_a_hole() -> None:
    hole = Provision(type="deny", data_period=Period(at(2015), at(2016)))
    root = Provision(type="permit", provision=[hole])
    decision = decide([consent(root)], request(categories=["conditions"]), NOW_MS)
    assert decision.windows() == {
        "conditions": [DateWindow(None, ms(at(2015))), DateWindow(ms(at(2016)), None)]
    }


def test_nested_permit_stays_inside_its_parents_data_period() -> None:
    inner = Provision(type="permit", data_period=Period(at(2000), at(2030)))
    root = Provision(
        type="deny",
        provision=[
            Provision(type="permit", data_period=Period(at(2019), at(2020)), provision=[inner])
        ],
    )
    decision = decide([consent(root)], request(categories=["conditions"]), NOW_MS)
    assert decision.windows() == {"conditions": [DateWindow(ms(at(2019)), ms(at(2020)))]}


# ---------------------------------------------------------------- purposes and roles


def test_research_needs_a_consent_that_names_research() -> None:
    researcher = request(role="researcher", actor="rs-1", purpose="HRESCH")
    assert permitted([consent(PERMIT_ALL)], researcher) == set()

    research = Provision(type="permit", purpose=["HRESCH"], actor=[Actor("researcher")])
    assert permitted([consent(research)], researcher) == EVERYTHING - {"demographics"}
    assert decide([consent(research)], researcher, NOW_MS).categories[0].reason == "role"


def test_a_deny_without_purposes_covers_research_too() -> None:
    research = consent(Provision(type="permit", purpose=["HRESCH"]))
    refuse = consent(Provision(type="deny"), id="c-2")
    researcher = request(role="researcher", actor="rs-1", purpose="HRESCH")
    assert permitted([research, refuse], researcher) == set()


def test_research_scope_consent_speaks_only_to_research() -> None:
    research = consent(Provision(type="permit"), scope="research")
    assert permitted([research], request()) == set()
    researcher = request(role="researcher", actor="rs-1", purpose="HRESCH")
    assert permitted(
        [consent(Provision(type="permit", purpose=["HRESCH"]), scope="research")], researcher
    )


def test_purpose_outside_the_role_is_denied_as_role() -> None:
    decision = decide([consent(PERMIT_ALL)], request(purpose="HMARKT"), NOW_MS)
    assert (decision.outcome, decision.reason) == ("deny", "role")


def test_patient_sees_own_record_without_consent() -> None:
    own = request(
        role="patient",
        actor="pat-1",
        launch_patient=PATIENT,
        purpose="PATRQT",
        scopes=["patient/*.rs"],
    )
    decision = decide([], own, NOW_MS)
    assert (decision.outcome, decision.reason) == ("permit", "own-record")
    assert decision.consent_version is None


def test_patient_sees_no_other_record_even_with_consent() -> None:
    other = request(role="patient", actor="pat-2", launch_patient="p-2", scopes=["user/*.rs"])
    decision = decide([consent(PERMIT_ALL)], other, NOW_MS)
    assert (decision.outcome, decision.reason) == ("deny", "role")


def test_trainee_needs_a_supervisor() -> None:
    trainee = request(role="trainee", actor="tr-1")
    assert decide([consent(PERMIT_ALL)], trainee, NOW_MS).reason == "supervision"
    supervised = request(role="trainee", actor="tr-1", supervisor="dr-1")
    assert permitted([consent(PERMIT_ALL)], supervised) == EVERYTHING


def test_admin_sees_demographics_at_most() -> None:
    admin = request(role="admin", actor="ad-1", purpose="HOPERAT")
    assert permitted([consent(PERMIT_ALL)], admin) == {"demographics"}


def test_scopes_narrow_what_consent_permits() -> None:
    req = request(scopes=["user/Observation.rs", "user/Condition.rs"])
    decision = decide([consent(PERMIT_ALL)], req, NOW_MS)
    assert set(decision.permitted()) == {"vital_signs", "conditions"}
    assert {c.reason for c in decision.categories if c.outcome == "deny"} == {"scope"}


def test_malformed_scope_opens_nothing() -> None:
    decision = decide([consent(PERMIT_ALL)], request(scopes=["user/Observation.sr"]), NOW_MS)
    assert (decision.outcome, decision.reason) == ("deny", "scope")


def test_break_glass_grant_permits_emergency_treatment_only() -> None:
    grant = BreakGlassGrant("g-1", "dr-1", "clinician", PATIENT, NOW_MS - 1, NOW_MS + 1000)
    emergency = decide([], request(purpose="ETREAT"), NOW_MS, grants=[grant])
    assert (emergency.outcome, emergency.reason, emergency.review) == (
        "permit",
        "break-glass",
        True,
    )
    assert emergency.consent_version == "BreakGlass/g-1"
    assert decide([], request(), NOW_MS, grants=[grant]).outcome == "deny"
    later = decide([], request(purpose="ETREAT"), NOW_MS + 1000, grants=[grant])
    assert later.outcome == "deny"
    other = decide([], request(purpose="ETREAT", actor="dr-2"), NOW_MS, grants=[grant])
    assert other.outcome == "deny"


# ---------------------------------------------------------------- what a deny reveals


def test_unknown_patient_and_refusal_look_the_same() -> None:
    refused = decide([consent(Provision(type="deny"))], request(), NOW_MS)
    unknown = decide([], request(patient="nobody"), NOW_MS)
    assert msgspec.json.encode(refused) == msgspec.json.encode(unknown)
    audit = evaluate([consent(Provision(type="deny"))], request(), NOW_MS)
    assert audit.versions(CATEGORIES) == "Consent/c-1/_history/1"  # only the ledger knows


def test_consent_of_another_patient_is_ignored() -> None:
    assert permitted([consent(PERMIT_ALL, patient="p-2")], request()) == set()


@pytest.mark.parametrize(
    "fields",
    [
        {"categories": []},
        {"categories": ["labs"]},
        {"purpose": "FUN"},
        {"action": "delete"},
        {"actor": ""},
        {"patient": ""},
    ],
)
def test_invalid_requests_are_not_decided(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        decide([], request(**fields), NOW_MS)


# ---------------------------------------------------------------- properties

YEARS = st.integers(min_value=2000, max_value=2030)
periods = st.one_of(
    st.none(),
    st.tuples(st.one_of(st.none(), YEARS), st.one_of(st.none(), YEARS))
    .filter(lambda p: p[0] is None or p[1] is None or p[0] < p[1])
    .map(lambda p: Period(None if p[0] is None else at(p[0]), None if p[1] is None else at(p[1]))),
)
actors = st.lists(
    st.builds(Actor, st.sampled_from(ROLES), st.sampled_from([None, "dr-1", "th-1"])),
    max_size=2,
    unique_by=lambda a: (a.reference, a.role) if a.reference else ("role", a.role),
)
leaf = st.builds(
    Provision,
    type=st.sampled_from(["permit", "deny"]),
    actor=actors,
    purpose=st.lists(st.sampled_from(["TREAT", "HRESCH", "CAREMGT"]), max_size=2),
    data_class=st.lists(
        st.sampled_from([*CATEGORIES, "MedicationRequest", "Observation"]), max_size=2
    ),
    data_period=periods,
)
provisions = st.recursive(
    leaf,
    lambda children: st.builds(
        Provision,
        type=st.sampled_from(["permit", "deny"]),
        actor=actors,
        data_class=st.lists(st.sampled_from(CATEGORIES), max_size=2),
        data_period=periods,
        provision=st.lists(children, max_size=3),
    ),
    max_leaves=8,
)
requests = st.builds(
    request,
    role=st.sampled_from(["clinician", "therapist", "researcher", "trainee", "admin"]),
    actor=st.sampled_from(["dr-1", "th-1", "rs-1"]),
    purpose=st.sampled_from(["TREAT", "HRESCH", "CAREMGT", "HOPERAT"]),
    supervisor=st.sampled_from([None, "dr-9"]),
    scopes=st.sampled_from([["user/*.rs"], ["user/Observation.rs"], [], ["patient/*.rs"]]),
)


def covered(decision_windows: list[DateWindow] | None, moment: int) -> bool:
    if decision_windows is None:
        return True
    return any(
        (w.start_ms is None or w.start_ms <= moment) and (w.end_ms is None or moment < w.end_ms)
        for w in decision_windows
    )


SAMPLE_TIMES = [ms(at(year, 7)) for year in range(1999, 2032, 3)]


def permitted_points(consents: list[StoredConsent], req: AccessRequest) -> set[tuple[str, int]]:
    decision = decide(consents, req, NOW_MS)
    return {
        (c.category, t)
        for c in decision.categories
        if c.outcome == "permit"
        for t in SAMPLE_TIMES
        if covered(c.windows, t)
    }


@settings(max_examples=200, deadline=None)
@given(provisions, requests)
def test_never_more_than_role_and_scope_allow(root: Provision, req: AccessRequest) -> None:
    decision = decide([consent(root)], req, NOW_MS)
    cap = ROLE_POLICY[req.role].categories
    assert set(decision.permitted()) <= cap
    if not req.scopes or req.scopes == ["patient/*.rs"]:
        assert decision.outcome == "deny"
    if decision.outcome == "deny":
        assert decision.consent_version is None


def only_denies(provision: Provision) -> Provision:
    children = [only_denies(child) for child in provision.provision]
    return msgspec.structs.replace(provision, type="deny", provision=children)


@settings(max_examples=200, deadline=None)
@given(provisions, provisions, requests)
def test_a_consent_of_denies_only_takes_away(
    first: Provision, second: Provision, req: AccessRequest
) -> None:
    one = permitted_points([consent(first)], req)
    refusal = consent(only_denies(second), id="c-2")
    assert permitted_points([consent(first), refusal], req) <= one


@settings(max_examples=200, deadline=None)
@given(provisions, requests)
def test_a_nested_deny_only_takes_away(root: Provision, req: AccessRequest) -> None:
    deny = Provision(type="deny", data_class=["conditions"], data_period=Period(at(2010), None))
    narrowed = msgspec.structs.replace(root, provision=[*root.provision, deny])
    assert permitted_points([consent(narrowed)], req) <= permitted_points([consent(root)], req)


@settings(max_examples=200, deadline=None)
@given(provisions, requests, st.randoms(use_true_random=False))
def test_sibling_order_does_not_matter(root: Provision, req: AccessRequest, rnd: Any) -> None:
    children = list(root.provision)
    rnd.shuffle(children)
    shuffled = msgspec.structs.replace(root, provision=children)
    assert permitted_points([consent(root)], req) == permitted_points([consent(shuffled)], req)


@settings(max_examples=200, deadline=None)
@given(provisions, requests)
def test_inactive_or_absent_consent_permits_nothing(root: Provision, req: AccessRequest) -> None:
    assert permitted([consent(root, status="inactive")], req) == set()
    assert permitted([], req) == set()


pairs = st.lists(
    st.tuples(st.integers(-50, 50), st.integers(-50, 50)).map(sorted).map(tuple), max_size=5
)


@given(pairs, pairs)
def test_span_algebra_agrees_with_membership(a_raw: list[Any], b_raw: list[Any]) -> None:
    a, b = sp.normalize(a_raw), sp.normalize(b_raw)
    for t in range(-55, 56):
        in_a, in_b = sp.contains(a, t), sp.contains(b, t)
        assert sp.contains(sp.union(a, b), t) == (in_a or in_b)
        assert sp.contains(sp.intersect(a, b), t) == (in_a and in_b)
        assert sp.contains(sp.subtract(a, b), t) == (in_a and not in_b)
        assert sp.contains(sp.complement(a), t) == (not in_a)
