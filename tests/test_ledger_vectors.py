"""Every RFC 9162 proof vector of transparency-dev/merkle, through the standalone verifier.

The vectors live outside the repository, in ``../shared/data/merkle-vectors`` relative to
the repository root; the tests skip, saying so, when that folder is absent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from metaworld.ledger.verify import ProofError, verify_consistency, verify_inclusion

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS = REPO_ROOT / ".." / "shared" / "data" / "merkle-vectors" / "testdata"
MISSING = f"merkle vectors not found at {VECTORS.resolve()}"


def _cases(kind: str) -> list[Any]:
    if not VECTORS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="missing")]
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(path, id=str(path.relative_to(VECTORS / kind))) for path in files]


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b64(item) for item in case["proof"] or []]


def _outcome(check: Callable[[], None]) -> bool:
    """True when the verifier raised ProofError."""
    try:
        check()
    except ProofError:
        return True
    return False


@pytest.mark.parametrize("path", _cases("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    rejected = _outcome(
        lambda: verify_inclusion(
            _b64(case["leafHash"]),
            case["leafIdx"],
            case["treeSize"],
            _proof(case),
            _b64(case["root"]),
        )
    )
    assert rejected == case["wantErr"], case["desc"]


@pytest.mark.parametrize("path", _cases("consistency"))
def test_consistency_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    rejected = _outcome(
        lambda: verify_consistency(
            case["size1"],
            case["size2"],
            _proof(case),
            _b64(case["root1"]),
            _b64(case["root2"]),
        )
    )
    assert rejected == case["wantErr"], case["desc"]


@pytest.mark.skipif(not VECTORS.is_dir(), reason=MISSING)
def test_vectors_cover_both_outcomes() -> None:
    cases = [json.loads(path.read_text()) for path in VECTORS.rglob("*.json")]
    assert len(cases) > 150
    assert {case["wantErr"] for case in cases} == {True, False}
