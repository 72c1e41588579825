"""SMART App Launch scopes: strict parsing and the categories they open."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metaworld.consent import (
    MalformedScopeError,
    PermissionOrderError,
    Scope,
    ScopeError,
    allowed_categories,
    parse_scope,
    parse_scopes,
)
from metaworld.records import CATEGORIES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("patient/Observation.rs", Scope("patient", "Observation", "rs")),
        ("user/Condition.rs", Scope("user", "Condition", "rs")),
        ("system/*.cruds", Scope("system", "*", "cruds")),
        ("user/Patient.r", Scope("user", "Patient", "r")),
        ("patient/*.read", Scope("patient", "*", "rs")),  # SMART v1, read as v2
        ("user/Encounter.write", Scope("user", "Encounter", "cud")),
        ("user/*.*", Scope("user", "*", "cruds")),
        (
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
            "observation-category|vital-signs",
            Scope(
                "patient",
                "Observation",
                "rs",
                (
                    (
                        "category",
                        "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
                    ),
                ),
            ),
        ),
    ],
)
def test_valid_scopes_parse(text: str, expected: Scope) -> None:
    assert parse_scope(text) == expected


@pytest.mark.parametrize(
    "text", ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "metaworld"]
)
def test_scopes_not_about_resources_are_ignored(text: str) -> None:
    assert parse_scope(text) is None


@pytest.mark.parametrize(
    "text", ["patient/Observation.sr", "user/*.rc", "user/*.rr", "system/*.dc", "user/*.scrud"]
)
def test_permissions_out_of_order_or_repeated_are_rejected(text: str) -> None:
    with pytest.raises(PermissionOrderError) as caught:
        parse_scope(text)
    assert caught.value.scope == text


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation",  # no permissions
        "patient/Observation.",  # empty permissions
        "patient/Observation.rx",  # unknown letter
        "patient/Observation.RS",  # upper case
        "patient/Observatoin.rs",  # not a FHIR resource type
        "patient/observation.rs",  # lower-case type
        "patient/Coding.rs",  # a data type, not a resource
        "patient/Observation.readwrite",
        "patient/.rs",
        "patient/Observation.rs?category",  # parameter without value
        "patient/Observation.rs?=x",
        "user/Observation/x.rs",
        "user/*.rs?a=1&",  # empty parameter after &
        "user/" + "A" * 600 + ".rs",
    ],
)
def test_malformed_scopes_are_rejected(text: str) -> None:
    with pytest.raises(MalformedScopeError):
        parse_scope(text)


def test_parse_scopes_takes_a_token_string() -> None:
    parsed = parse_scopes("openid fhirUser launch/patient patient/*.rs user/Condition.r")
    assert [s.resource for s in parsed] == ["*", "Condition"]
    with pytest.raises(ScopeError):
        parse_scopes(["patient/*.rs", "user/*.sr"])


@given(st.lists(st.sampled_from("cruds"), min_size=1, max_size=6))
def test_exactly_the_canonical_orders_are_accepted(letters: list[str]) -> None:
    text = "user/Observation." + "".join(letters)
    canonical = "".join(sorted(set(letters), key="cruds".index))
    if "".join(letters) == canonical:
        scope = parse_scope(text)
        assert scope is not None
        assert scope.permissions == canonical
    else:
        with pytest.raises(PermissionOrderError):
            parse_scope(text)


def test_every_subset_in_order_is_accepted() -> None:
    for size in range(1, 6):
        for letters in itertools.combinations("cruds", size):
            assert parse_scope("system/*." + "".join(letters)) is not None


# ---------------------------------------------------------------- categories


def test_resource_scopes_open_their_categories() -> None:
    assert allowed_categories(["user/Observation.rs"], CATEGORIES) == {"vital_signs"}
    assert allowed_categories("user/Patient.rs user/Condition.rs", CATEGORIES) == {
        "demographics",
        "conditions",
    }
    assert allowed_categories(["user/*.rs"], ["allergies", "encounters"]) == {
        "allergies",
        "encounters",
    }


def test_viewing_needs_read_and_search() -> None:
    assert allowed_categories(["user/Observation.r"], CATEGORIES) == set()
    assert allowed_categories(["user/Observation.s"], CATEGORIES) == set()
    assert allowed_categories(["user/Observation.r", "user/Observation.s"], CATEGORIES) == {
        "vital_signs"
    }
    assert allowed_categories(["user/Observation.cud"], CATEGORIES) == set()


def test_a_category_needs_all_its_resource_types() -> None:
    assert allowed_categories(["user/MedicationRequest.rs"], CATEGORIES) == set()
    both = ["user/MedicationRequest.rs", "user/MedicationStatement.rs"]
    assert allowed_categories(both, CATEGORIES) == {"medications"}


def test_patient_scopes_count_only_in_the_launch_context() -> None:
    assert allowed_categories(["patient/*.rs"], CATEGORIES) == set(CATEGORIES)
    assert allowed_categories(["patient/*.rs"], CATEGORIES, in_patient_context=False) == set()
    assert allowed_categories(["user/*.rs"], CATEGORIES, in_patient_context=False) == set(
        CATEGORIES
    )


def test_narrowed_scopes_open_only_what_they_name() -> None:
    vitals = "user/Observation.rs?category=vital-signs"
    labs = (
        "user/Observation.rs?category="
        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    )
    diagnoses = "user/Condition.rs?category=encounter-diagnosis"
    assert allowed_categories([vitals], CATEGORIES) == {"vital_signs"}
    assert allowed_categories([labs], CATEGORIES) == set()
    assert allowed_categories([diagnoses], CATEGORIES) == set()
    assert allowed_categories(["user/*.rs?category=vital-signs"], CATEGORIES) == set()
