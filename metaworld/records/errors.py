"""Errors of the records package, named by what went wrong.

    RecordsError
    └── BundleRejectedError  a bundle file that will not be stored, with the place at fault

Messages name files, resources and fields, never a value from a record: the value at
fault may be a name or a diagnosis.
"""

from __future__ import annotations


class RecordsError(Exception):
    """Base of every error raised by :mod:`metaworld.records`."""


class BundleRejectedError(RecordsError):
    """A bundle that is malformed; nothing of it is stored.

    `resource` is ``Type/id`` when the entry has both, else ``entry[i]`` (or ``bundle``
    for the envelope itself); `field` is a dotted FHIR path inside that resource.
    """

    def __init__(self, source: str, resource: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: {resource}: field {field}: {problem}")
        self.source = source
        self.resource = resource
        self.field = field
        self.problem = problem
