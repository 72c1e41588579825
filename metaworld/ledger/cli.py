"""`metaworld ledger verify`: audit a ledger database and say whether it is intact."""

from __future__ import annotations

import base64
from pathlib import Path

from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from metaworld.ledger._audit import VerifyReport, verify_store
from metaworld.ledger._ledger import LedgerError
from metaworld.ledger.checkpoint import KEY_FILE, LedgerKeyError, load_ledger_key
from metaworld.ledger.store import CheckpointRow
from metaworld.store import normalize_url

# Exit statuses of `verify_command`.
EXIT_INTACT = 0
EXIT_TAMPERED = 1
EXIT_CANNOT_CHECK = 2


def verify_command(db_url: str, data_dir: Path) -> int:
    """Audit the ledger at `db_url` with the key in `data_dir`; print a short report.

    Returns 0 when every entry and checkpoint checks out and the newest checkpoint covers
    every entry, 1 naming the first bad entry or checkpoint or the first unsigned entry,
    2 when the audit cannot run (no key, no ledger tables). Reads only: it neither
    creates a key nor creates tables.
    """
    key_path = data_dir / KEY_FILE
    if not key_path.exists():
        print(f"cannot verify: no ledger key at {key_path}")
        return EXIT_CANNOT_CHECK
    try:
        public_key = load_ledger_key(key_path).public_key()
    except LedgerKeyError as exc:
        print(f"cannot verify: {exc}")
        return EXIT_CANNOT_CHECK

    engine = create_engine(normalize_url(db_url))
    try:
        if not inspect(engine).has_table("ledger_entries"):
            print("cannot verify: the database has no ledger tables")
            return EXIT_CANNOT_CHECK
        report = verify_store(engine, public_key)
        with engine.connect() as conn:
            signed = conn.execute(select(func.max(CheckpointRow.size))).scalar() or 0
    except (SQLAlchemyError, LedgerError) as exc:
        print(f"cannot verify: {exc}")
        return EXIT_CANNOT_CHECK
    finally:
        engine.dispose()

    print(describe(report))
    if report.ok and signed < report.size:
        # Without a checkpoint over them, entries could have been added, rewritten
        # together with their hashes, or had their checkpoints deleted: unprovable.
        print(
            f"UNSIGNED: entries {signed} to {report.size - 1} are covered by no signed "
            "checkpoint (a running server signs one every 30 s and at shutdown)"
        )
        return EXIT_TAMPERED
    return EXIT_INTACT if report.ok else EXIT_TAMPERED


def describe(report: VerifyReport) -> str:
    """A few lines for a person: verdict, first bad entry or checkpoint, the problems."""
    root = base64.b64encode(report.root).decode("ascii")
    lines = [f"ledger: {report.size} entries, root {root}, {report.checkpoints} checkpoints"]
    if report.ok:
        lines.append("intact: every entry and checkpoint checks out")
        return "\n".join(lines)
    lines.append(f"TAMPERED OR DAMAGED: {report.problem_count} problem(s)")
    if report.first_bad_entry is not None:
        lines.append(f"first bad entry: {report.first_bad_entry}")
    if report.first_bad_checkpoint is not None:
        lines.append(f"first bad checkpoint: #{report.first_bad_checkpoint}")
    if report.first_bad_node is not None:
        level, index = report.first_bad_node
        lines.append(f"first bad cached subtree: level {level}, index {index}")
    lines += [f"  {problem}" for problem in report.problems]
    if report.problem_count > len(report.problems):
        lines.append(f"  ... and {report.problem_count - len(report.problems)} more")
    return "\n".join(lines)
