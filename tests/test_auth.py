import subprocess
import sys
import time

import jwt
import pytest

from metaworld.auth import AUDIENCE, DEV_ISSUER, TokenError, dev_verifier, load_or_create_dev_key


def signed(data_dir, typ="at+jwt", **claims):
    now = int(time.time())
    body = {
        "iss": DEV_ISSUER,
        "aud": AUDIENCE,
        "sub": "s",
        "iat": now,
        "exp": now + 60,
        "role": "patient",
    }
    body.update(claims)
    key = load_or_create_dev_key(data_dir)
    return jwt.encode(body, key, algorithm="EdDSA", headers={"typ": typ})


def test_both_spellings_of_the_access_token_type_are_accepted(data_dir):
    verifier = dev_verifier(data_dir)
    for typ in ("at+jwt", "application/at+jwt", "AT+JWT"):
        assert verifier.verify(signed(data_dir, typ)).subject == "s"
    with pytest.raises(TokenError, match="type"):
        verifier.verify(signed(data_dir, "JWT"))


def test_a_token_that_lives_for_years_is_refused(data_dir):
    now = int(time.time())
    with pytest.raises(TokenError, match="lifetime"):
        dev_verifier(data_dir).verify(signed(data_dir, exp=now + 100 * 365 * 86400))


def test_dev_keys_are_refused_beyond_loopback(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "metaworld.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "--jwt-pem" in out.stderr
