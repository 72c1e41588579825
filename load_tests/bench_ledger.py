"""Append throughput of the audit ledger on a temporary SQLite file (WAL).

    .venv/bin/python -m load_tests.bench_ledger [--entries N] [--batch N]

Appends one entry at a time with `Ledger.append`, each in its own committed transaction,
with the default automatic checkpoints, and prints entries per second. `--batch` also
measures `append_many` with that many entries per transaction.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from metaworld.ledger import Ledger, LedgerEntry, load_or_create_ledger_key, verify_store
from metaworld.store import make_engine

# The throughput the ledger must sustain, entries per second, one commit each.
TARGET_PER_SECOND = 2000


def _entries(count: int, seed: int = 7) -> list[LedgerEntry]:
    rng = random.Random(seed)
    return [
        LedgerEntry(
            kind=rng.choice(["access", "access", "access", "consent_granted"]),
            actor=f"practitioner-{rng.randrange(50)}",
            role="clinician",
            patient=f"patient-{rng.randrange(500)}",
            categories=["vital-signs", "laboratory"],
            purpose="TREAT",
            room="consult-1",
            outcome=rng.choice(["permit", "deny"]),
            consent_version="3",
            at_ms=1_767_225_600_000 + i,
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=0)
    args = parser.parse_args()
    entries = _entries(args.entries)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        engine = make_engine(f"sqlite:///{data_dir / 'bench.db'}")
        key = load_or_create_ledger_key(data_dir)
        ledger = Ledger(engine, key)

        started = time.perf_counter()
        for entry in entries:
            ledger.append(entry)
        elapsed = time.perf_counter() - started
        rate = len(entries) / elapsed
        verdict = "ok" if rate > TARGET_PER_SECOND else f"BELOW TARGET {TARGET_PER_SECOND}/s"
        print(
            f"ledger append: {len(entries)} entries in {elapsed:.2f} s = {rate:,.0f} entries/s "
            f"(SQLite WAL, one commit each) {verdict}"
        )

        if args.batch:
            started = time.perf_counter()
            for offset in range(0, len(entries), args.batch):
                ledger.append_many(entries[offset : offset + args.batch])
            elapsed = time.perf_counter() - started
            print(
                f"ledger append_many: {len(entries) / elapsed:,.0f} entries/s "
                f"({args.batch} per commit)"
            )

        started = time.perf_counter()
        size = ledger.size()
        for index in range(0, size, max(1, size // 1000)):
            ledger.inclusion_proof(index)
        proofs = len(range(0, size, max(1, size // 1000)))
        print(f"inclusion proofs: {proofs / (time.perf_counter() - started):,.0f} per second")

        started = time.perf_counter()
        report = verify_store(engine, key.public_key())
        print(
            f"verify_store: {report.size} entries in {time.perf_counter() - started:.2f} s, "
            f"{'intact' if report.ok else 'NOT INTACT'}"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
