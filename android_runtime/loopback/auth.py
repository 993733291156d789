"""adb's RSA authentication, device side: the keys a loopback device trusts and signature checks.

What real adbd does (AOSP ``adb/daemon/auth.cpp``, ``libcrypto_utils/android_pubkey.c``):
after the host's CNXN the device sends ``AUTH(TOKEN, 0, 20 random bytes)``; the host answers
``AUTH(SIGNATURE, 0, sig)`` with each of its private keys in turn, where ``sig`` is
``RSA_sign(NID_sha1, token)``, i.e. PKCS#1 v1.5 over the SHA-1 DigestInfo with the token as the
digest. A signature made by a trusted key gets the device's CNXN; a wrong one gets a fresh
token. Out of keys, the host sends ``AUTH(RSAPUBLICKEY, 0, "<base64 key> user@host\\0")`` and a
phone asks its user; the loopback device refuses (logs the key) and the host lists it as
``unauthorized``.

A public key (``~/.android/adbkey.pub``, one per line in ``adb_keys``) is base64 of Android's
RSAPublicKey struct, little-endian: ``uint32 modulus_size_words (64)``, ``uint32 n0inv``,
``uint8 modulus[256]``, ``uint8 rr[256]``, ``uint32 exponent``, then `` user@host``.
Pure Python (``pow``), no crypto library needed: verification is one modular exponentiation.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

TOKEN_SIZE = 20
MODULUS_BYTES = 256  # ANDROID_PUBKEY_MODULUS_SIZE: adb keys are RSA-2048
_KEY_STRUCT = struct.Struct(f"<II{MODULUS_BYTES}s{MODULUS_BYTES}sI")
SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")  # DER prefix of a SHA-1 DigestInfo
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdbPublicKey:
    """One adb RSA public key.

    Attributes:
        n: the modulus.
        e: the public exponent (3 or 65537).
        comment: the ``user@host`` after the key, if any.
    """

    n: int
    e: int
    comment: str = ""

    def verify(self, token: bytes, signature: bytes) -> bool:
        """Whether `signature` is this key's PKCS#1 v1.5 SHA-1 signature of `token` (as adbd's RSA_verify)."""
        if len(signature) != MODULUS_BYTES or len(token) != TOKEN_SIZE:
            return False
        s = int.from_bytes(signature, "big")
        if s >= self.n:
            return False
        em = pow(s, self.e, self.n).to_bytes(MODULUS_BYTES, "big")
        body = SHA1_DIGEST_INFO + token
        expected = b"\x00\x01" + b"\xff" * (MODULUS_BYTES - 3 - len(body)) + b"\x00" + body
        return hmac.compare_digest(em, expected)


def parse_public_key(line: str) -> AdbPublicKey:
    """Decode one ``adbkey.pub`` line (``<base64> user@host``).

    Raises:
        ValueError: not base64 of an RSA-2048 RSAPublicKey struct.
    """
    b64, _, comment = line.strip().partition(" ")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) < _KEY_STRUCT.size:
        raise ValueError(f"{len(raw)} bytes, an adb key has {_KEY_STRUCT.size}")
    words, _n0inv, modulus, _rr, exponent = _KEY_STRUCT.unpack_from(raw)
    if words != MODULUS_BYTES // 4:
        raise ValueError(f"modulus of {words} words, adb keys have {MODULUS_BYTES // 4}")
    n = int.from_bytes(modulus, "little")
    if n.bit_length() < 2000 or exponent not in (3, 65537):
        raise ValueError("not an RSA-2048 key with exponent 3 or 65537")
    return AdbPublicKey(n, exponent, comment.strip())


def read_keys(path: Path) -> list[AdbPublicKey]:
    """The keys of one file (``adbkey.pub`` or an ``adb_keys`` list); a missing file has none.

    Lines that are blank, start with ``#`` or do not decode are skipped (and logged).
    """
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(parse_public_key(line))
        except ValueError as err:
            log.warning("loopback: %s line %d is not an adb public key (%s)", path, number, err)
    return keys


def user_key_file() -> Path:
    """``adbkey.pub`` of this user's adb server: ``$ANDROID_USER_HOME`` or ``~/.android``."""
    home = os.environ.get("ANDROID_USER_HOME") or str(Path.home() / ".android")
    return Path(home) / "adbkey.pub"


@dataclass(frozen=True)
class KeyRing:
    """Where a loopback device finds the keys it trusts; files are read again at each handshake,
    so a key the adb server creates after the device started is trusted at once.

    Attributes:
        files: key files (``adbkey.pub`` or ``adb_keys`` lists).
        extra: a function giving more key files at handshake time (default: none).
    """

    files: tuple[Path, ...]
    extra: Callable[[], Iterable[Path]] | None = None

    def keys(self) -> list[AdbPublicKey]:
        files = list(self.files) + (list(self.extra()) if self.extra else [])
        return [k for f in files for k in read_keys(Path(f))]

    def describe(self) -> str:
        return ", ".join(str(f) for f in self.files) + (" and this process's private adb servers" if self.extra else "")


def token() -> bytes:
    """A fresh random challenge."""
    return os.urandom(TOKEN_SIZE)
