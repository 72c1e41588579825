"""Errors of the consent package, named by who is at fault.

    ConsentError
    ├── InvalidConsentError        the consent must not be stored (its author's fault)
    │   ├── MalformedConsentError  not decodable, a missing or ill-typed field, a naive time
    │   ├── UnknownCodeError       a status, role, action, purpose or class we do not know
    │   ├── ReversedPeriodError    a period whose end is not after its start
    │   ├── NestingTooDeepError    provisions nested deeper than MAX_DEPTH, or too many
    │   ├── DuplicateActorError    the same actor twice in one provision
    │   └── PatientMismatchError   the consent is about another patient than the one named
    ├── ScopeError                 a malformed SMART scope (the token issuer's fault)
    │   ├── MalformedScopeError
    │   └── PermissionOrderError   permission letters out of c, r, u, d, s order, or repeated
    ├── InvalidRequestError        an access request no decision is made on (caller's bug)
    ├── NotAllowedError            this caller may not change consents or read the accounting
    ├── ConsentNotFoundError       no such consent for this patient
    ├── ConsentConflictError       a concurrent change took the version; read again, retry
    └── BreakGlassRefusedError     break-the-glass asked by a non-clinician, or badly formed

An unknown code is always an error at store time, never read as "no restriction": a
typo in a deny provision must not turn it into a wider permit.
"""

from __future__ import annotations


class ConsentError(Exception):
    """Base of every error raised by :mod:`metaworld.consent`."""


class InvalidConsentError(ConsentError):
    """A consent that is not stored; `path` names the field at fault."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class MalformedConsentError(InvalidConsentError):
    pass


class UnknownCodeError(InvalidConsentError):
    def __init__(self, path: str, code: str, known: str) -> None:
        super().__init__(path, f"unknown code {code[:64]!r} (known: {known})")
        self.code = code


class ReversedPeriodError(InvalidConsentError):
    pass


class NestingTooDeepError(InvalidConsentError):
    pass


class DuplicateActorError(InvalidConsentError):
    pass


class PatientMismatchError(InvalidConsentError):
    pass


class ScopeError(ConsentError):
    """A scope string that does not parse; `scope` is the offending scope."""

    def __init__(self, scope: str, problem: str) -> None:
        super().__init__(f"scope {scope[:80]!r}: {problem}")
        self.scope = scope
        self.problem = problem


class MalformedScopeError(ScopeError):
    pass


class PermissionOrderError(ScopeError):
    pass


class InvalidRequestError(ConsentError):
    pass


class NotAllowedError(ConsentError):
    pass


class ConsentNotFoundError(ConsentError):
    pass


class ConsentConflictError(ConsentError):
    pass


class BreakGlassRefusedError(ConsentError):
    pass
