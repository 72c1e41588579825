"""Access tokens: verification (RFC 8725 practice), dev key minting, and identities.

The server accepts JSON Web Tokens signed with one pinned algorithm family (EdDSA by
default). Every token must carry ``iss``, ``aud``, ``sub``, ``iat`` and ``exp`` as
required claims, with integer timestamps, the header ``typ`` ``at+jwt`` (RFC 9068), and
a ``role`` claim naming one of the clinic roles. In development the server makes an
Ed25519 key pair in its data directory and can mint tokens with it; in production the
public keys come from a PEM file or a JWKS file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metaworld.keys import load_or_create, read_key
from metaworld.roles import ROLES, Role

DEV_ISSUER: Final = "metaworld-dev"
AUDIENCE: Final = "metaworld"
TOKEN_TYPE: Final = "at+jwt"
# RFC 9068 allows the media type with or without its "application/" prefix.
_TOKEN_TYPES: Final = frozenset({TOKEN_TYPE, f"application/{TOKEN_TYPE}"})
DEV_KEY_FILE: Final = "dev_jwt_ed25519.pem"
DEFAULT_LEEWAY_S: Final = 30
MAX_TTL_S: Final = 7 * 24 * 3600
_INT_CLAIMS: Final = ("iat", "exp", "nbf")


class TokenError(Exception):
    """A token the server will not accept; the message says why, never the token."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for."""

    subject: str
    role: Role
    name: str | None
    scopes: tuple[str, ...]
    expires_at: int
    patient: str | None = None  # SMART launch context: the patient record this token is for

    @property
    def record_id(self) -> str:
        """The patient record a patient's token speaks for (their own)."""
        return self.patient or self.subject


@dataclass(frozen=True)
class Verifier:
    """Checks tokens against fixed keys, issuer, audience and algorithms."""

    keys: tuple[Any, ...]
    issuer: str
    audience: str = AUDIENCE
    algorithms: tuple[str, ...] = ("EdDSA",)
    leeway_s: int = DEFAULT_LEEWAY_S

    def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("token is not a well-formed JWT") from exc
        if header.get("alg") not in self.algorithms:
            raise TokenError(f"token algorithm {header.get('alg')!r} is not accepted")
        if str(header.get("typ", "")).lower() not in _TOKEN_TYPES:
            raise TokenError(f"token type must be {TOKEN_TYPE!r}")
        claims = self._decode_with_any_key(token)
        return _identity_from(claims)

    def _decode_with_any_key(self, token: str) -> dict[str, Any]:
        last: jwt.PyJWTError | None = None
        for key in self.keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=list(self.algorithms),
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway_s,
                    options={"require": ["exp", "iat", "iss", "aud", "sub"], "strict_aud": True},
                )
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.ExpiredSignatureError as exc:
                raise TokenError("token has expired") from exc
            except jwt.InvalidAudienceError as exc:
                raise TokenError("token audience is not this server") from exc
            except jwt.InvalidIssuerError as exc:
                raise TokenError("token issuer is not trusted") from exc
            except jwt.ImmatureSignatureError as exc:
                raise TokenError("token is not valid yet") from exc
            except jwt.MissingRequiredClaimError as exc:
                raise TokenError(f"token lacks the {exc.claim!r} claim") from exc
            except jwt.PyJWTError as exc:
                raise TokenError(f"token rejected: {type(exc).__name__}") from exc
            return claims
        raise TokenError("token signature does not verify") from last


def _identity_from(claims: dict[str, Any]) -> Identity:
    for claim in _INT_CLAIMS:
        if claim in claims and (type(claims[claim]) is not int):
            raise TokenError(f"token claim {claim!r} must be an integer timestamp")
    if claims["exp"] - claims["iat"] > MAX_TTL_S:
        raise TokenError(f"token lifetime is over {MAX_TTL_S // 86400} days")
    sub = claims["sub"]
    if not isinstance(sub, str) or not 0 < len(sub) <= 255:
        raise TokenError("token subject must be a non-empty string")
    role = claims.get("role")
    if role not in ROLES:
        raise TokenError(f"token role must be one of {', '.join(ROLES)}")
    name = claims.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 64):
        raise TokenError("token name must be a string of at most 64 characters")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenError("token scope must be a space-separated string")
    patient = claims.get("patient")
    if patient is not None and (not isinstance(patient, str) or not 0 < len(patient) <= 64):
        raise TokenError("token patient must be a record id of at most 64 characters")
    return Identity(sub, role, name, tuple(scope.split()), claims["exp"], patient)


# ---------------------------------------------------------------- keys


def load_or_create_dev_key(data_dir: Path) -> Ed25519PrivateKey:
    """The development signing key, made on first use and kept in the data directory."""
    key, _ = load_or_create(
        data_dir / DEV_KEY_FILE, lambda path: read_key(path, TokenError, "dev token key")
    )
    return key


def dev_verifier(data_dir: Path) -> Verifier:
    key = load_or_create_dev_key(data_dir)
    return Verifier(keys=(key.public_key(),), issuer=DEV_ISSUER)


def verifier_from_files(
    issuer: str,
    *,
    pem: Path | None = None,
    jwks: Path | None = None,
    audience: str = AUDIENCE,
    algorithms: tuple[str, ...] = ("EdDSA",),
) -> Verifier:
    """Production verifier from a public key PEM file or a JWKS file."""
    keys: list[Any] = []
    if pem is not None:
        keys.append(serialization.load_pem_public_key(pem.read_bytes()))
    if jwks is not None:
        doc = json.loads(jwks.read_text())
        keys.extend(jwt.PyJWK(entry).key for entry in doc.get("keys", []))
    if not keys:
        raise TokenError("no public keys configured: give a PEM file or a JWKS file")
    return Verifier(tuple(keys), issuer, audience, algorithms)


def mint_dev_token(
    data_dir: Path,
    subject: str,
    role: Role,
    *,
    name: str | None = None,
    ttl_s: int = 3600,
    scopes: tuple[str, ...] = (),
    patient: str | None = None,
    now: float | None = None,
) -> str:
    """A token signed with the dev key of `data_dir`, for development and tests."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be between 1 s and {MAX_TTL_S} s")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": DEV_ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": issued,
        "exp": issued + ttl_s,
        "role": role,
    }
    if name:
        claims["name"] = name
    if scopes:
        claims["scope"] = " ".join(scopes)
    if patient:
        claims["patient"] = patient
    key = load_or_create_dev_key(data_dir)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": TOKEN_TYPE})
