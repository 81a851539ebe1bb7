"""Station secrets: generation and hashing in Mosquitto's own format.

A station secret is 32 random bytes (``secrets.token_urlsafe``, 43 characters), so the
hash only has to be one-way, not slow: brute force is out of reach whatever the cost
factor.  We use PBKDF2-HMAC-SHA512 with a 12-byte salt, the scheme the
dynamic-security plugin itself stores (``password``/``salt``/``iterations``), so a
stored hash can be written into a dynamic-security file as is (bootstrap does this for
the server account; a broker could be rebuilt from the database the same way).

Encoded form kept in the database: ``pbkdf2-sha512$<iterations>$<salt b64>$<hash b64>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = [
    "SECRET_BYTES",
    "DynsecPassword",
    "dynsec_password",
    "hash_secret",
    "new_secret",
    "verify_secret",
]

SECRET_BYTES = 32
SALT_BYTES = 12
#: Cost factor for hashes we store; Mosquitto's default is 101.
ITERATIONS = 10_000
SCHEME = "pbkdf2-sha512"

DynsecPassword = dict[str, str | int]


def new_secret() -> str:
    """A fresh random station secret (URL-safe, no escaping needed in MQTT URLs)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def _derive(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", secret.encode("utf-8"), salt, iterations)


def hash_secret(secret: str, *, iterations: int = ITERATIONS) -> str:
    """The encoded one-way hash of ``secret``."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(secret, salt, iterations)
    return "$".join(
        (
            SCHEME,
            str(iterations),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def verify_secret(secret: str, encoded: str) -> bool:
    """True when ``secret`` matches the encoded hash (constant-time comparison)."""
    try:
        scheme, iterations, salt, digest = encoded.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest)
        actual = _derive(secret, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def dynsec_password(secret: str, *, iterations: int = ITERATIONS) -> DynsecPassword:
    """The ``password``, ``salt`` and ``iterations`` fields of a dynamic-security client."""
    _, rounds, salt, digest = hash_secret(secret, iterations=iterations).split("$")
    return {"password": digest, "salt": salt, "iterations": int(rounds)}
