"""Ed25519 signing keys kept as files in the data directory, made on first use.

Used for the development token key, the ledger's checkpoint key and the consent
service's key. Each caller brings its own reader, so a bad file raises that caller's
named error.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger("metaworld.keys")

KeyReader = Callable[[Path], Ed25519PrivateKey]


def read_key(path: Path, error: type[Exception], what: str) -> Ed25519PrivateKey:
    """The unencrypted PEM Ed25519 private key in `path`; a bad file raises `error`."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise error(f"{what} {path} is not an Ed25519 key")
    return key


def load_or_create(path: Path, read: KeyReader) -> tuple[Ed25519PrivateKey, bool]:
    """The key in `path`, made (mode 0600) if there is none; and whether it was made.

    The new key is written whole to a private temporary file and then linked into
    place: the file appears complete or not at all, and when two processes start
    together on one data directory, the loser of the race reads the winner's key.
    """
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("key file %s is readable by other users", path)
        return read(path), False

    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return read(path), False
    finally:
        temporary.unlink(missing_ok=True)
    return key, True
