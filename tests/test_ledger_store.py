"""The ledger over a real database: appends, proofs, checkpoints, audits and tampering."""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

import metaworld.ledger
from metaworld.ledger import (
    CheckpointError,
    EntryError,
    Ledger,
    LedgerConflictError,
    LedgerEntry,
    LedgerKeyError,
    TreeRangeError,
    load_or_create_ledger_key,
    parse_checkpoint,
    reason_digest,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
    verify_store,
)
from metaworld.ledger.checkpoint import Checkpoint, sign_checkpoint
from metaworld.ledger.cli import verify_command
from metaworld.ledger.entry import decode_leaf, encode_leaf
from metaworld.ledger.store import LEDGER_TABLES
from metaworld.ledger.tree import EMPTY_ROOT, MemoryTree, leaf_hash
from metaworld.store import Base, make_engine

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in unix ms
PG_URL = os.environ.get("METAWORLD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def make_entry(i: int, patient: str | None = None, actor: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        kind="access" if i % 3 else "consent_granted",
        actor=actor or f"practitioner-{i % 4}",
        role="clinician",
        patient=patient or f"patient-{i % 5}",
        categories=["vital-signs", "laboratory"],
        purpose="TREAT",
        room="consult-1",
        outcome="permit" if i % 2 else "deny",
        consent_version="2",
        at_ms=T0 + i * 1000,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{db_path}")
    yield engine
    engine.dispose()


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return load_or_create_ledger_key(tmp_path)


def open_ledger(engine: Engine, key: Ed25519PrivateKey, every: int | None = 10) -> Ledger:
    return Ledger(engine, key, checkpoint_every=every, clock=itertools.count(T0).__next__)


def filled(engine: Engine, key: Ed25519PrivateKey, count: int = 35) -> Ledger:
    ledger = open_ledger(engine, key)
    for i in range(count):
        assert ledger.append(make_entry(i)) == i
    return ledger


@contextlib.contextmanager
def raw_sqlite(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that bypasses the ledger, as someone tampering with the file would."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        yield conn
        conn.commit()


# Appending and proving


def test_append_then_prove_inclusion_and_consistency(
    engine: Engine, key: Ed25519PrivateKey
) -> None:
    ledger = open_ledger(engine, key)
    assert ledger.size() == 0
    assert ledger.root() == EMPTY_ROOT
    for i in range(20):
        ledger.append(make_entry(i))
    assert ledger.append_many([make_entry(i) for i in range(20, 45)]) == list(range(20, 45))
    assert ledger.append_many([]) == []

    reference = MemoryTree(leaf_hash(encode_leaf(i, make_entry(i))) for i in range(45))
    assert ledger.size() == 45
    for size in range(46):
        assert ledger.root(size) == reference.root(size)

    for size in (1, 2, 7, 16, 33, 45):
        root = ledger.root(size)
        for index in range(size):
            stored = ledger.get(index)
            assert stored.entry == make_entry(index)
            proof = ledger.inclusion_proof(index, size)
            verify_inclusion(stored.leaf_hash, index, size, proof, root)
        for old in range(1, size + 1):
            proof = ledger.consistency_proof(old, size)
            verify_consistency(old, size, proof, ledger.root(old), root)

    with pytest.raises(TreeRangeError):
        ledger.inclusion_proof(45, 45)
    with pytest.raises(TreeRangeError):
        ledger.consistency_proof(3, 46)
    with pytest.raises(TreeRangeError):
        ledger.get(45)


def test_state_reloads_from_the_database(engine: Engine, key: Ed25519PrivateKey) -> None:
    first = filled(engine, key, 29)
    second = open_ledger(engine, key)
    assert (second.size(), second.root()) == (29, first.root())
    second.append(make_entry(29))
    reference = MemoryTree(leaf_hash(encode_leaf(i, make_entry(i))) for i in range(30))
    assert second.root() == reference.root()


def test_checkpoints_are_signed_automatically_and_on_demand(
    engine: Engine, key: Ed25519PrivateKey
) -> None:
    ledger = open_ledger(engine, key, every=10)
    assert ledger.latest_checkpoint() is None
    for i in range(25):
        ledger.append(make_entry(i))
    latest = ledger.latest_checkpoint()
    assert latest is not None
    statement = verify_checkpoint(latest, key.public_key(), origin="metaworld ledger")
    assert (statement.size, statement.root) == (20, ledger.root(20))

    text_now = ledger.checkpoint()
    assert ledger.latest_checkpoint() == text_now
    now = verify_checkpoint(text_now, key.public_key())
    assert (now.size, now.root) == (25, ledger.root())
    verify_consistency(20, 25, ledger.consistency_proof(20), statement.root, now.root)

    # A batch that crosses a multiple of checkpoint_every is checkpointed at its end.
    ledger.append_many([make_entry(i) for i in range(25, 42)])
    latest = ledger.latest_checkpoint()
    assert latest is not None
    assert verify_checkpoint(latest, key.public_key()).size == 42


def test_entries_are_queried_by_patient_actor_kind_and_time(
    engine: Engine, key: Ed25519PrivateKey
) -> None:
    ledger = filled(engine, key, 30)
    by_patient = ledger.entries(patient="patient-2")
    assert [e.index for e in by_patient] == list(range(2, 30, 5))
    assert all(e.entry.patient == "patient-2" for e in by_patient)
    assert [e.index for e in ledger.entries(actor="practitioner-1", limit=3)] == [1, 5, 9]
    assert [e.index for e in ledger.entries(since_ms=T0 + 27_000)] == [27, 28, 29]
    assert [e.index for e in ledger.entries(kind="consent_granted", patient="patient-0")] == [
        0,
        15,
    ]
    assert ledger.entries(patient="nobody") == []


def test_appends_from_many_threads_get_distinct_indices(
    engine: Engine, key: Ed25519PrivateKey
) -> None:
    ledger = open_ledger(engine, key, every=16)
    indices: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(40):
            index = ledger.append(make_entry(n * 100 + i))
            with lock:
                indices.append(index)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(indices) == list(range(160))
    assert verify_store(engine, key.public_key()).ok


async def test_appends_through_trio_worker_threads(engine: Engine, key: Ed25519PrivateKey) -> None:
    ledger = open_ledger(engine, key)

    async def append(i: int) -> None:
        await trio.to_thread.run_sync(ledger.append, make_entry(i))

    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(append, i)
    assert ledger.size() == 12
    assert verify_store(engine, key.public_key()).ok


def test_a_second_writer_causes_a_conflict_not_a_collision(
    engine: Engine, key: Ed25519PrivateKey
) -> None:
    first, second = open_ledger(engine, key), open_ledger(engine, key)
    assert first.append(make_entry(0)) == 0
    with pytest.raises(LedgerConflictError):
        second.append(make_entry(1))
    assert second.size() == 1
    assert second.append(make_entry(1)) == 1
    assert verify_store(engine, key.public_key()).ok


# Auditing the store


def test_verify_store_passes_an_intact_log(engine: Engine, key: Ed25519PrivateKey) -> None:
    ledger = filled(engine, key)
    ledger.checkpoint()
    report = verify_store(engine, key.public_key(), origin="metaworld ledger")
    assert report.ok, report.problems
    assert (report.size, report.root, report.checkpoints) == (35, ledger.root(), 4)


def test_verify_store_of_an_empty_log(engine: Engine, key: Ed25519PrivateKey) -> None:
    open_ledger(engine, key).checkpoint()
    report = verify_store(engine, key.public_key())
    assert report.ok
    assert (report.size, report.root) == (0, EMPTY_ROOT)


def test_one_altered_byte_names_the_entry(
    engine: Engine, key: Ed25519PrivateKey, db_path: Path
) -> None:
    filled(engine, key)
    with raw_sqlite(db_path) as conn:
        (body,) = conn.execute("SELECT body FROM ledger_entries WHERE idx = 7").fetchone()
        altered = body.replace(b'"deny"', b'"denz"').replace(b'"permit"', b'"permiu"')
        assert len(altered) == len(body) and altered != body
        conn.execute("UPDATE ledger_entries SET body = ? WHERE idx = 7", (altered,))

    report = verify_store(engine, key.public_key())
    assert not report.ok
    assert report.first_bad_entry == 7
    # The checkpoint at size 10 signed the original entry 7.
    assert report.first_bad_checkpoint == 1


def test_an_altered_entry_with_a_recomputed_hash_is_caught_by_a_checkpoint(
    engine: Engine, key: Ed25519PrivateKey, db_path: Path
) -> None:
    filled(engine, key)
    forged = msgspec.structs.replace(make_entry(12), outcome="permit")
    body = encode_leaf(12, forged)
    with raw_sqlite(db_path) as conn:
        conn.execute(
            "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = 12",
            (body, leaf_hash(body)),
        )
    report = verify_store(engine, key.public_key())
    assert report.first_bad_entry is None
    assert report.first_bad_checkpoint == 2  # size 20, the first to cover entry 12


def test_swapped_rows_name_the_first_of_them(
    engine: Engine, key: Ed25519PrivateKey, db_path: Path
) -> None:
    filled(engine, key)
    columns = "body, leaf_hash, subtrees, kind, patient, actor, at_ms"
    with raw_sqlite(db_path) as conn:
        row3 = conn.execute(f"SELECT {columns} FROM ledger_entries WHERE idx = 3").fetchone()
        row9 = conn.execute(f"SELECT {columns} FROM ledger_entries WHERE idx = 9").fetchone()
        assignment = ", ".join(f"{name.strip()} = ?" for name in columns.split(","))
        update = f"UPDATE ledger_entries SET {assignment} WHERE idx = ?"
        conn.execute(update, (*row9, 3))
        conn.execute(update, (*row3, 9))

    report = verify_store(engine, key.public_key())
    assert report.first_bad_entry == 3
    assert any("belong at index 9" in problem for problem in report.problems)


def test_swapped_and_renumbered_entries_are_caught_by_a_checkpoint(
    engine: Engine, key: Ed25519PrivateKey, db_path: Path
) -> None:
    filled(engine, key)
    with raw_sqlite(db_path) as conn:
        for index, source in ((3, 9), (9, 3)):
            body = encode_leaf(index, make_entry(source))
            conn.execute(
                "UPDATE ledger_entries SET body = ?, leaf_hash = ?, kind = ?, patient = ?,"
                " actor = ?, at_ms = ? WHERE idx = ?",
                (body, leaf_hash(body), *_columns(make_entry(source)), index),
            )
    report = verify_store(engine, key.public_key())
    assert report.first_bad_entry is None
    assert report.first_bad_checkpoint == 1


def test_a_missing_entry_is_named(engine: Engine, key: Ed25519PrivateKey, db_path: Path) -> None:
    filled(engine, key)
    with raw_sqlite(db_path) as conn:
        conn.execute("DELETE FROM ledger_entries WHERE idx = 22")
    report = verify_store(engine, key.public_key())
    assert report.first_bad_entry == 22
    assert report.size == 22
    assert report.first_bad_checkpoint == 3  # size 30 covers the lost entry


def test_altered_look_up_columns_are_named(
    engine: Engine, key: Ed25519PrivateKey, db_path: Path
) -> None:
    filled(engine, key)
    with raw_sqlite(db_path) as conn:
        conn.execute("UPDATE ledger_entries SET patient = 'someone-else' WHERE idx = 4")
    report = verify_store(engine, key.public_key())
    assert report.first_bad_entry == 4
    assert report.first_bad_checkpoint is None


def test_altered_cached_subtrees_are_named(
    engine: Engine, key: Ed25519PrivateKey, db_path: Path
) -> None:
    filled(engine, key)
    with raw_sqlite(db_path) as conn:
        conn.execute("UPDATE ledger_entries SET subtrees = ? WHERE idx = 7", (bytes(96),))
    report = verify_store(engine, key.public_key())
    assert not report.ok
    assert report.first_bad_node == (1, 3)
    assert report.first_bad_entry is None


def test_a_tampered_checkpoint_is_named(
    engine: Engine, key: Ed25519PrivateKey, db_path: Path
) -> None:
    filled(engine, key)
    with raw_sqlite(db_path) as conn:
        (text_2,) = conn.execute("SELECT text FROM ledger_checkpoints WHERE id = 2").fetchone()
        conn.execute(
            "UPDATE ledger_checkpoints SET text = ? WHERE id = 2",
            (text_2.replace("\n20\n", "\n21\n"),),
        )
    report = verify_store(engine, key.public_key())
    assert report.first_bad_entry is None
    assert report.first_bad_checkpoint == 2


def test_a_checkpoint_signed_by_another_key_is_named(
    engine: Engine, key: Ed25519PrivateKey
) -> None:
    ledger = filled(engine, key)
    impostor = Ledger(engine, Ed25519PrivateKey.generate())
    impostor.checkpoint()
    report = verify_store(engine, key.public_key())
    assert report.first_bad_checkpoint == 4
    assert ledger.size() == report.size


def test_verify_command_reports_and_returns_a_status(
    engine: Engine,
    key: Ed25519PrivateKey,
    db_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger = filled(engine, key)
    url = f"sqlite:///{db_path}"
    assert verify_command(url, tmp_path) == 1  # the newest entries are not signed yet
    assert "UNSIGNED" in capsys.readouterr().out
    ledger.checkpoint()
    assert verify_command(url, tmp_path) == 0
    assert "intact" in capsys.readouterr().out

    with raw_sqlite(db_path) as conn:
        conn.execute("UPDATE ledger_entries SET body = CAST('{}' AS BLOB) WHERE idx = 5")
    assert verify_command(url, tmp_path) == 1
    out = capsys.readouterr().out
    assert "first bad entry: 5" in out
    assert "first bad checkpoint: #1" in out

    assert verify_command(url, tmp_path / "elsewhere") == 2
    assert "no ledger key" in capsys.readouterr().out


# Checkpoint text, keys and entries


def test_checkpoint_text_format(key: Ed25519PrivateKey) -> None:
    statement = Checkpoint("metaworld ledger", 1024, bytes(range(32)), T0)
    signed = sign_checkpoint(statement, key)
    lines = signed.split("\n")
    root_b64 = base64.b64encode(bytes(range(32))).decode()
    assert lines[:5] == ["metaworld ledger", "1024", root_b64, str(T0), ""]
    assert lines[5].startswith("\N{EM DASH} metaworld-ledger ")
    assert len(base64.b64decode(lines[5].split(" ")[2])) == 4 + 64
    assert lines[6:] == [""]
    assert parse_checkpoint(signed).checkpoint == statement
    assert verify_checkpoint(signed, key.public_key()) == statement


def test_checkpoint_with_extra_signatures_still_verifies(key: Ed25519PrivateKey) -> None:
    statement = Checkpoint("metaworld ledger", 3, EMPTY_ROOT, T0)
    witness = sign_checkpoint(statement, Ed25519PrivateKey.generate(), "witness")
    ours = sign_checkpoint(statement, key)
    both = ours + witness.split("\n\n", 1)[1]
    assert verify_checkpoint(both, key.public_key()) == statement
    with pytest.raises(CheckpointError):
        verify_checkpoint(witness, key.public_key())


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.replace("\n3\n", "\n4\n", 1),
        lambda t: t.replace("\n3\n", "\n03\n", 1),
        lambda t: t.replace("\n\n", "\n", 1),
        lambda t: t.rstrip("\n"),
        lambda t: t.replace("\N{EM DASH}", "-"),
        lambda t: t.replace("metaworld ledger", "other ledger"),
        lambda t: t[: t.rindex(" ") + 1] + "AAAA" + t[t.rindex(" ") + 5 :],
        lambda t: "extra line\n" + t,
    ],
)
def test_damaged_checkpoints_are_rejected(
    key: Ed25519PrivateKey, damage: Callable[[str], str]
) -> None:
    signed = sign_checkpoint(Checkpoint("metaworld ledger", 3, EMPTY_ROOT, T0), key)
    with pytest.raises(CheckpointError):
        verify_checkpoint(damage(signed), key.public_key(), origin="metaworld ledger")


def test_ledger_key_is_created_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_ledger_key(tmp_path / "data")
    path = tmp_path / "data" / "ledger_ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_ledger_key(tmp_path / "data")
    assert again.public_key() == first.public_key()
    assert [p.name for p in path.parent.iterdir()] == ["ledger_ed25519.pem"]

    path.write_bytes(b"not a key")
    with pytest.raises(LedgerKeyError):
        load_or_create_ledger_key(tmp_path / "data")


def test_entry_canonical_bytes_sort_keys_and_pin_the_index() -> None:
    entry = make_entry(1)
    body = encode_leaf(3, entry)
    assert body.startswith(b'{"entry":{"actor":"practitioner-1","at_ms":')
    assert body.endswith(b'"role":"clinician","room":"consult-1"},"index":3,"v":1}')
    assert b'"reason_hash":null,"review":false,' in body
    assert decode_leaf(body).entry == entry
    assert encode_leaf(4, entry) != body


def test_entries_refuse_text_where_a_hash_belongs() -> None:
    entry = make_entry(0)
    with pytest.raises(EntryError):
        msgspec.structs.replace(entry, reason_hash="patient asked for it")
    with pytest.raises(EntryError):
        msgspec.structs.replace(entry, kind="deleted")
    with pytest.raises(EntryError):
        msgspec.structs.replace(entry, patient="")
    digest = reason_digest("unconscious on arrival")
    glass = msgspec.structs.replace(entry, kind="break_glass_start", reason_hash=digest)
    assert glass.reason_hash == digest and len(digest) == 64


def test_public_surface_is_pinned() -> None:
    assert set(metaworld.ledger.__all__) == {
        "DEFAULT_CHECKPOINT_EVERY",
        "DEFAULT_ORIGIN",
        "Checkpoint",
        "CheckpointError",
        "EntryError",
        "Ledger",
        "LedgerConflictError",
        "LedgerCorruptError",
        "LedgerEntry",
        "LedgerError",
        "LedgerKeyError",
        "ProofError",
        "StoredEntry",
        "TreeRangeError",
        "VerifyReport",
        "load_or_create_ledger_key",
        "parse_checkpoint",
        "reason_digest",
        "sign_checkpoint",
        "verify_checkpoint",
        "verify_consistency",
        "verify_inclusion",
        "verify_store",
    }


# PostgreSQL


def _postgres() -> Engine | None:
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError:
        engine.dispose()
        return None
    return engine


@pytest.mark.postgres
def test_ledger_on_postgresql(key: Ed25519PrivateKey) -> None:
    engine = _postgres()
    if engine is None:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    tables = list(LEDGER_TABLES)
    Base.metadata.drop_all(engine, tables=tables)
    Base.metadata.create_all(engine, tables=tables)
    try:
        ledger = open_ledger(engine, key, every=8)
        for i in range(20):
            ledger.append(make_entry(i))
        ledger.append_many([make_entry(i) for i in range(20, 30)])
        root = ledger.root()
        verify_inclusion(ledger.get(17).leaf_hash, 17, 30, ledger.inclusion_proof(17), root)
        verify_consistency(9, 30, ledger.consistency_proof(9), ledger.root(9), root)
        assert [e.index for e in ledger.entries(patient="patient-3")] == [3, 8, 13, 18, 23, 28]
        assert open_ledger(engine, key).root() == root
        assert verify_store(engine, key.public_key()).ok

        with engine.begin() as conn:
            conn.execute(text("UPDATE ledger_entries SET at_ms = at_ms + 1 WHERE idx = 6"))
        assert verify_store(engine, key.public_key()).first_bad_entry == 6
    finally:
        Base.metadata.drop_all(engine, tables=tables)
        engine.dispose()


def _columns(entry: LedgerEntry) -> tuple[object, ...]:
    return (entry.kind, entry.patient, entry.actor, entry.at_ms)
