"""The roles a person can hold in the clinic, and what each may do in general."""

from __future__ import annotations

from typing import Final, Literal, get_args

Role = Literal["patient", "clinician", "therapist", "trainee", "researcher", "admin"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

# Roles that work in the clinic; they are shown by name, may call a patient into a room,
# and may enter staff-only rooms that list them.
STAFF_ROLES: Final[frozenset[Role]] = frozenset({"clinician", "therapist", "admin"})
