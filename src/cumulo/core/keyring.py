"""Secrets at rest: AES-256-GCM with a list of keys, the first of which encrypts.

A sealed value is `key id (8 bytes) | nonce (12) | ciphertext+tag`; the key id is the first 8
bytes of SHA-256 of the key, so any key in the ring decrypts what it sealed and rotation is
"put the new key first, re-seal everything". The associated data binds a value to its name, so a
ciphertext copied onto another secret's row does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cumulo.core.files import write_private

__all__ = ["Keyring", "KEY_ENV", "KEY_FILE"]

KEY_ENV = "CUMULO_SECRET_KEY"  # comma-separated base64 keys, the first encrypts
KEY_FILE = "secret.key"  # in CUMULO_HOME, mode 0600: one base64 key per line, the first encrypts


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:8]


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{where} holds a key that is not 32 bytes of base64 (AES-256); "
                         "make one with: python -c \"import os,base64;print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"")
    return key


class Keyring:
    def __init__(self, keys: list[bytes], path: Path | None = None) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self.keys = list(keys)
        self.path = path  # where the keys live, when they live in a file (rotation writes it)
        self._by_id = {_key_id(k): k for k in self.keys}

    @classmethod
    def load(cls, home: Path, environ: dict[str, str] | None = None) -> Keyring:
        """CUMULO_SECRET_KEY if set, else $CUMULO_HOME/secret.key (made on first use, mode 0600)."""
        env = os.environ if environ is None else environ
        if env.get(KEY_ENV):
            return cls([_decode(k, KEY_ENV) for k in env[KEY_ENV].split(",") if k.strip()])
        path = home / KEY_FILE
        if not path.exists():
            cls._write(path, [os.urandom(32)])
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        return cls([_decode(line, str(path)) for line in lines], path)

    @staticmethod
    def _write(path: Path, keys: list[bytes]) -> None:
        write_private(path, "".join(base64.urlsafe_b64encode(k).decode() + "\n" for k in keys))

    def rotated(self) -> Keyring:
        """A ring with a new first key (written to the key file, old keys kept to decrypt). With
        keys from CUMULO_SECRET_KEY the operator rotates them there; this ring is kept as is."""
        if self.path is None:
            return self
        keys = [os.urandom(32), *self.keys]
        self._write(self.path, keys)
        return Keyring(keys, self.path)

    def seal(self, plaintext: bytes, name: str) -> bytes:
        key = self.keys[0]
        nonce = os.urandom(12)
        return _key_id(key) + nonce + AESGCM(key).encrypt(nonce, plaintext, name.encode())

    def open(self, sealed: bytes, name: str) -> bytes:
        key = self._by_id.get(bytes(sealed[:8]))
        if key is None:
            raise ValueError(f"the secret {name!r} was sealed with a key this control plane does not have "
                             f"(add it back to {KEY_ENV} or {KEY_FILE})")
        try:
            return AESGCM(key).decrypt(bytes(sealed[8:20]), bytes(sealed[20:]), name.encode())
        except InvalidTag:
            raise ValueError(f"the secret {name!r} does not decrypt: its stored value was altered") from None

    def sealed_with_first(self, sealed: bytes) -> bool:
        return bytes(sealed[:8]) == _key_id(self.keys[0])
