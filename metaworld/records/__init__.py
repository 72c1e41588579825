"""Health records: FHIR R4 bundle import, record categories and the panel view.

The world server never calls this package directly for a person: every read goes
through the consent service (:mod:`metaworld.consent`), which decides first.
"""

from metaworld.records.bundle import ParsedBundle, ParsedResource, parse_bundle
from metaworld.records.categories import (
    CATEGORIES,
    CATEGORIES_OF_TYPE,
    CATEGORY_RULES,
    Category,
    CategoryRule,
    category_of,
)
from metaworld.records.errors import BundleRejectedError, RecordsError
from metaworld.records.importer import ImportReport, Rejection, import_bundles
from metaworld.records.view import (
    AllergyItem,
    ConditionItem,
    DateWindow,
    Demographics,
    EncounterItem,
    ImmunizationItem,
    MedicationItem,
    Quantity,
    RecordView,
    UnknownCategoryError,
    VitalSign,
    record_view,
)

__all__ = [
    "CATEGORIES",
    "CATEGORIES_OF_TYPE",
    "CATEGORY_RULES",
    "AllergyItem",
    "BundleRejectedError",
    "Category",
    "CategoryRule",
    "ConditionItem",
    "DateWindow",
    "Demographics",
    "EncounterItem",
    "ImmunizationItem",
    "ImportReport",
    "MedicationItem",
    "ParsedBundle",
    "ParsedResource",
    "Quantity",
    "RecordView",
    "RecordsError",
    "Rejection",
    "UnknownCategoryError",
    "VitalSign",
    "category_of",
    "import_bundles",
    "parse_bundle",
    "record_view",
]
