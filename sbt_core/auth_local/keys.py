"""The local provider's RS256 signing key: generated on first start, kept as PEM (mode 0600) in the
provider's data directory, published as a JWKS whose ``kid`` is the RFC 7638 thumbprint."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["KEY_FILE", "SigningKey", "load_or_create_key"]

KEY_FILE = "jwt-signing-key.pem"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@attrs.frozen(repr=False)
class SigningKey:
    """An RSA private key with its public JWK. ``repr`` never shows the key."""

    private_key: rsa.RSAPrivateKey
    kid: str
    public_jwk: dict[str, Any]

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [jwk]}`` as served at ``/.well-known/jwks.json``."""
        return {"keys": [dict(self.public_jwk)]}

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"


def _from_private(private_key: rsa.RSAPrivateKey) -> SigningKey:
    numbers = private_key.public_key().public_numbers()
    e, n = _b64(numbers.e), _b64(numbers.n)
    # RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    thumbprint = hashlib.sha256(json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"),
                                           sort_keys=True).encode()).digest()
    kid = base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode()
    return SigningKey(private_key, kid, {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e})


def load_or_create_key(directory: Path) -> SigningKey:
    """The key in ``directory/KEY_FILE``, created (2048-bit RSA, mode 0600) if absent.

    Two processes starting at once (``sbt serve`` and ``sbt token``) both end with the same key: the file
    is created exclusively and the loser reads the winner's.
    """
    path = directory / KEY_FILE
    directory.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd, name = tempfile.mkstemp(prefix=f".{KEY_FILE}.", suffix=".tmp", dir=directory)  # mode 0600
        tmp = Path(name)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic and fails if another process won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return _from_private(loaded)
