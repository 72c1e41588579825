"""FHIR date and dateTime values as milliseconds since the Unix epoch.

FHIR allows partial dates (``2020``, ``2020-03``, ``2020-03-06``) and times with or
without a zone. A partial date stands for its first instant; a value without a zone is
read as UTC, so that every resource has one comparable point in time.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

_PARTIAL: Final = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def fhir_datetime_ms(value: object) -> int | None:
    """The instant a FHIR date/dateTime/instant denotes, or None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    partial = _PARTIAL.match(value)
    try:
        if partial:
            year, month, day = partial.groups()
            moment = dt.datetime(int(year), int(month or 1), int(day or 1), tzinfo=dt.UTC)
        else:
            moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return datetime_ms(moment)


def datetime_ms(moment: dt.datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return delta // dt.timedelta(milliseconds=1)
