"""The ``metaworld records import`` command, as a function the CLI module wires up."""

from __future__ import annotations

import sys
from pathlib import Path

from metaworld.records.importer import import_bundles
from metaworld.store import make_engine


def import_command(db_url: str, files: list[Path]) -> int:
    """Import FHIR bundle files; prints counts, returns 1 if any bundle was rejected."""
    missing = [path for path in files if not path.is_file()]
    if missing:
        for path in missing:
            print(f"not a file: {path}", file=sys.stderr)
        return 2
    engine = make_engine(db_url)
    try:
        report = import_bundles(engine, files)
    finally:
        engine.dispose()
    print(
        f"bundles {report.bundles}, resources {report.resources}: "
        f"{report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.kept} kept; patients {report.patients}"
    )
    for rejection in report.rejected:
        print(
            f"rejected {rejection.file}: {rejection.resource}: "
            f"field {rejection.field}: {rejection.problem}",
            file=sys.stderr,
        )
    return 1 if report.rejected else 0
