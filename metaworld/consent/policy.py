"""The role policy: the most each role may ever see, before scopes and consent narrow it.

What a person sees of a record is the intersection of three things, each of which can
only narrow: the token's SMART scopes, this table, and the patient's consent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from metaworld.records.categories import CATEGORIES, Category
from metaworld.roles import Role

ALL: Final[frozenset[Category]] = frozenset(CATEGORIES)
CLINICAL: Final[frozenset[Category]] = ALL - {"demographics"}


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """`categories` and `purposes` are upper bounds; consent still decides within them.

    `own_record_only`: may see only the patient in the token's launch context, and then
    needs no consent (a patient's right of access). `needs_supervisor`: the world server
    must name a supervising clinician in the request. `may_break_glass`: may start an
    emergency override (purpose ETREAT).
    """

    categories: frozenset[Category]
    purposes: frozenset[str]
    own_record_only: bool = False
    needs_supervisor: bool = False
    may_break_glass: bool = False


ROLE_POLICY: Final[Mapping[Role, RolePolicy]] = {
    "patient": RolePolicy(ALL, frozenset({"PATRQT", "TREAT"}), own_record_only=True),
    "clinician": RolePolicy(
        ALL, frozenset({"TREAT", "ETREAT", "CAREMGT", "CLINTRL"}), may_break_glass=True
    ),
    "therapist": RolePolicy(ALL, frozenset({"TREAT", "CAREMGT"})),
    "trainee": RolePolicy(ALL, frozenset({"TREAT"}), needs_supervisor=True),
    # Research sees clinical data only, never who the patient is.
    "researcher": RolePolicy(CLINICAL, frozenset({"HRESCH", "CLINTRCH", "BIORCH"})),
    # Administration may see who a patient is (to run the clinic), nothing clinical.
    "admin": RolePolicy(frozenset({"demographics"}), frozenset({"HOPERAT", "PATADMIN"})),
}

# Roles that may record or withdraw a consent: the patient for themself, a clinician on
# the patient's behalf (a consent given on paper or by voice in a consultation).
CONSENT_EDITORS: Final[frozenset[Role]] = frozenset({"patient", "clinician"})
# Roles that may read the accounting of disclosures: the patient, and the privacy officer.
HISTORY_READERS: Final[frozenset[Role]] = frozenset({"patient", "admin"})
