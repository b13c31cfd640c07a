"""The local provider's RS256 signing keys, published as a JWKS whose ``kid`` is the RFC 7638 thumbprint.

The current key signs; it comes from config (``signing_key``, a PEM given as ``{ file = }`` or ``{ env = }``,
the same for every process of a deployment) or, without one, is generated on first start and kept as
PEM (mode 0600) in the provider's data directory (one process, or processes sharing that directory).
Previous keys (``previous_signing_keys``) only verify: they stay in the JWKS while tokens they signed may
still be alive, so a key is rotated without a 401 storm.
"""

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

__all__ = ["KEY_FILE", "KeySet", "SigningKey", "key_from_pem", "load_or_create_key"]

KEY_FILE = "jwt-signing-key.pem"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@attrs.frozen(repr=False)
class SigningKey:
    """An RSA key with its public JWK; ``private_key`` is None for a verify-only previous key given as a
    public PEM. ``repr`` never shows the key."""

    private_key: rsa.RSAPrivateKey | None
    kid: str
    public_jwk: dict[str, Any]

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [jwk]}`` as served at ``/.well-known/jwks.json``."""
        return {"keys": [dict(self.public_jwk)]}

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"


def _public_jwk(public_key: rsa.RSAPublicKey) -> tuple[str, dict[str, Any]]:
    numbers = public_key.public_numbers()
    e, n = _b64(numbers.e), _b64(numbers.n)
    # RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    thumbprint = hashlib.sha256(json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"),
                                           sort_keys=True).encode()).digest()
    kid = base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode()
    return kid, {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}


def _from_private(private_key: rsa.RSAPrivateKey) -> SigningKey:
    kid, jwk = _public_jwk(private_key.public_key())
    return SigningKey(private_key, kid, jwk)


def _from_public(public_key: rsa.RSAPublicKey) -> SigningKey:
    kid, jwk = _public_jwk(public_key)
    return SigningKey(None, kid, jwk)


@attrs.frozen(repr=False)
class KeySet:
    """The key that signs (``current``) and the keys that still verify (``previous``)."""

    current: SigningKey
    previous: tuple[SigningKey, ...] = ()

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [current, *previous]}`` as served at ``/.well-known/jwks.json`` (duplicates once)."""
        keys: dict[str, dict[str, Any]] = {}
        for key in (self.current, *self.previous):
            keys.setdefault(key.kid, dict(key.public_jwk))
        return {"keys": list(keys.values())}

    def __repr__(self) -> str:
        return f"KeySet(current={self.current.kid!r}, previous={[k.kid for k in self.previous]!r})"


def key_from_pem(pem: str, where: str) -> SigningKey:
    """The key of an RSA PEM (a private key; for a previous key a public one is enough, since it only
    verifies). :raises ValueError: not an RSA key in PEM, naming ``where`` (a config path, never the PEM)."""
    data = pem.encode()
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if isinstance(private, rsa.RSAPrivateKey):
                return _from_private(private)
        else:
            public = serialization.load_pem_public_key(data)
            if isinstance(public, rsa.RSAPublicKey):
                return _from_public(public)
    except (ValueError, TypeError):
        pass
    raise ValueError(f"{where}: expected an RSA key in PEM form (BEGIN PRIVATE KEY / BEGIN PUBLIC KEY)")


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
