"""Signed checkpoints: the ledger's statement "my tree of N leaves has this root".

The text is modelled on the transparency-log checkpoint carried in a signed note::

    metaworld ledger                                  <- origin, names the log
    1024                                              <- tree size, decimal
    3q2+7w...base64 of the 32-byte root...=           <- root hash, base64
    1767225600000                                     <- timestamp, unix ms
                                                      <- blank line
    — metaworld-ledger AbCdEf...base64...             <- signature line(s)

The four body lines, each ending in a newline, are the signed message. A signature line is
an em dash (U+2014), a space, the key name, a space, and base64 of a 4-byte key id followed
by the 64-byte Ed25519 signature. The key id is the first four bytes of
``SHA-256(key name || "\\n" || 0x01 || raw public key)``, so a verifier can tell which of
several signatures is meant for its key. Lines end in "\\n" and the text ends in one.

Besides `cryptography` this module uses only the standard library, so it can travel with
`metaworld.ledger.verify` to an auditor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from metaworld.keys import load_or_create, read_key

__all__ = [
    "DEFAULT_KEY_NAME",
    "KEY_FILE",
    "Checkpoint",
    "CheckpointError",
    "LedgerKeyError",
    "SignedCheckpoint",
    "key_id",
    "load_ledger_key",
    "load_or_create_ledger_key",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]

log = logging.getLogger(__name__)

DEFAULT_KEY_NAME = "metaworld-ledger"
KEY_FILE = "ledger_ed25519.pem"

_SIGNATURE_PREFIX = "\N{EM DASH} "
_ROOT_SIZE = 32
_KEY_ID_SIZE = 4
_SIGNATURE_SIZE = 64
_KEY_NAME = re.compile(r"[^\s+]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class CheckpointError(ValueError):
    """A checkpoint is malformed, signed by another key, or its signature is wrong."""


class LedgerKeyError(Exception):
    """The ledger's signing key file cannot be used."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint states, before signing or after a successful verification."""

    origin: str
    size: int
    root: bytes
    timestamp_ms: int

    def body(self) -> str:
        """The signed message: four lines, each ending in a newline."""
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n{self.timestamp_ms}\n"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A parsed checkpoint whose signature is not yet checked."""

    checkpoint: Checkpoint
    # (key name, key id, signature) per signature line, in order.
    signatures: tuple[tuple[str, bytes, bytes], ...]


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + raw).digest()[:_KEY_ID_SIZE]


def sign_checkpoint(
    checkpoint: Checkpoint, key: Ed25519PrivateKey, key_name: str = DEFAULT_KEY_NAME
) -> str:
    """The signed checkpoint text."""
    _check_fields(checkpoint)
    if not _KEY_NAME.fullmatch(key_name):
        raise CheckpointError(f"key name {key_name!r} must be non-empty, no spaces or '+'")
    body = checkpoint.body()
    signature = key.sign(body.encode("utf-8"))
    blob = base64.b64encode(key_id(key_name, key.public_key()) + signature).decode("ascii")
    return f"{body}\n{_SIGNATURE_PREFIX}{key_name} {blob}\n"


def parse_checkpoint(text: str) -> SignedCheckpoint:
    """Split a checkpoint text into its statement and signatures; check nothing else."""
    body, separator, signature_block = text.partition("\n\n")
    if not separator or not signature_block.endswith("\n"):
        raise CheckpointError("a checkpoint is a body, a blank line and signature lines")
    lines = body.split("\n")
    if len(lines) != 4:
        raise CheckpointError(f"a checkpoint body has 4 lines, not {len(lines)}")
    origin, size, root, timestamp = lines
    if not _DECIMAL.fullmatch(size) or not _DECIMAL.fullmatch(timestamp):
        raise CheckpointError("tree size and timestamp must be plain decimal numbers")
    checkpoint = Checkpoint(origin, int(size), _b64decode(root, "root hash"), int(timestamp))
    _check_fields(checkpoint)

    signatures = []
    for line in signature_block[:-1].split("\n"):
        name, space, blob = line.removeprefix(_SIGNATURE_PREFIX).partition(" ")
        if not line.startswith(_SIGNATURE_PREFIX) or not space or not _KEY_NAME.fullmatch(name):
            raise CheckpointError("malformed signature line")
        raw = _b64decode(blob, "signature")
        if len(raw) != _KEY_ID_SIZE + _SIGNATURE_SIZE:
            raise CheckpointError("a signature is a 4-byte key id and 64 signature bytes")
        signatures.append((name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]))
    return SignedCheckpoint(checkpoint, tuple(signatures))


def verify_checkpoint(
    text: str,
    public_key: Ed25519PublicKey,
    key_name: str = DEFAULT_KEY_NAME,
    origin: str | None = None,
) -> Checkpoint:
    """Return the checkpoint if `public_key` signed it under `key_name` (and, if given, it
    names `origin`); raise `CheckpointError` otherwise. Other signatures are ignored."""
    signed = parse_checkpoint(text)
    if origin is not None and signed.checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for log {signed.checkpoint.origin!r}")
    wanted_id = key_id(key_name, public_key)
    ours = [sig for name, kid, sig in signed.signatures if (name, kid) == (key_name, wanted_id)]
    if not ours:
        raise CheckpointError(f"checkpoint carries no signature by key {key_name!r}")
    message = signed.checkpoint.body().encode("utf-8")
    for signature in ours:
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            continue
        return signed.checkpoint
    raise CheckpointError("checkpoint signature does not verify")


def load_ledger_key(path: Path) -> Ed25519PrivateKey:
    """Read the ledger's key; raises LedgerKeyError for a bad file."""
    return read_key(path, LedgerKeyError, "ledger key")


def load_or_create_ledger_key(data_dir: Path) -> Ed25519PrivateKey:
    """The ledger's signing key from `data_dir/ledger_ed25519.pem`, created (mode 0600) on
    first use. Whoever holds this file can sign checkpoints: keep it out of backups that
    travel with the database."""
    path = data_dir / KEY_FILE
    key, created = load_or_create(path, load_ledger_key)
    if created:
        log.info("created ledger signing key %s", path)
    return key


def _check_fields(checkpoint: Checkpoint) -> None:
    if not checkpoint.origin or "\n" in checkpoint.origin:
        raise CheckpointError("origin must be one non-empty line")
    if len(checkpoint.root) != _ROOT_SIZE:
        raise CheckpointError(f"root hash must be {_ROOT_SIZE} bytes")
    if checkpoint.size < 0 or checkpoint.timestamp_ms < 0:
        raise CheckpointError("tree size and timestamp must not be negative")


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise CheckpointError(f"{what} is not base64") from exc
    # Only the canonical spelling is accepted, so one checkpoint has one text.
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw
