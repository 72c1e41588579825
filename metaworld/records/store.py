"""The records tables: every imported FHIR resource, stored as JSON.

Rows are keyed by resource type and id, so importing the same resource twice finds the
same row. `patient_id`, `category` and `effective_ms` are derived at import and indexed
so that a patient's view is one query; the resource itself stays as it was validated.
No file name is stored: export tools often put the patient's name in it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from metaworld.store import Base


class RecordRow(Base):
    """One FHIR resource; `patient_id` is set for resources about a patient."""

    __tablename__ = "records_resources"
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    effective_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_updated_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_records_resources_patient_category", "patient_id", "category", "effective_ms"),
    )
