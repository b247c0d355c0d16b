"""Encryption of project secrets and git credentials at rest: Fernet (AES-128-CBC with an
HMAC-SHA256, from `cryptography`) under the keys of `KILN_SECRETS_KEY`.

`KILN_SECRETS_KEY` is a comma-separated list of Fernet keys, newest first: values are sealed
with the first key, and any of them opens a value (`MultiFernet`), so a key is rotated by
putting a new one in front, re-sealing (`SecretStore.rotate`), then dropping the old one.

Each value is sealed together with what it is (its `context`, e.g. `secret:12:NPM_TOKEN`) and
opened only as that: a sealed value copied to another row or project does not open there.

`cryptography` is imported on the first seal or open, not before: it is about 8 MB resident,
which an API process that never handles a secret does not pay (the keys are checked at start
all the same, as Fernet checks them).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import TYPE_CHECKING

from kiln.errors import PermanentError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

KEY_SETTING = "KILN_SECRETS_KEY"


class SecretsUnavailable(PermanentError):
    """This Kiln has no (usable) KILN_SECRETS_KEY: secrets can be neither sealed nor opened."""


class UnreadableSecret(PermanentError):
    """A sealed value that none of the configured keys opens (or sealed for something else)."""


class InvalidSecretsKey(ValueError):
    """KILN_SECRETS_KEY is set but is not a list of Fernet keys."""


KEY_BYTES = 32


def generate_key() -> str:
    """A new random key, in the form KILN_SECRETS_KEY takes (as Fernet.generate_key makes it)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_keys(value: str) -> list[bytes]:
    """The keys of a KILN_SECRETS_KEY value, newest first; InvalidSecretsKey when one is not a
    Fernet key (32 bytes, url-safe base64: Fernet's own check). The message never repeats the
    value."""
    keys = []
    for position, text in enumerate((part.strip() for part in value.split(",")), start=1):
        if not text:
            continue
        try:
            key = base64.urlsafe_b64decode(text.encode())
        except (ValueError, binascii.Error):
            key = b""
        if len(key) == KEY_BYTES:
            keys.append(text.encode())
        else:
            raise InvalidSecretsKey(
                f"{KEY_SETTING}: key {position} is not a Fernet key (32 random bytes, url-safe "
                'base64: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None
    return keys


class SecretBox:
    """Seals and opens values under the configured keys."""

    def __init__(self, keys: str) -> None:
        self._keys_given = parse_keys(keys)
        self._fernet: MultiFernet | None = None

    @property
    def available(self) -> bool:
        return bool(self._keys_given)

    def _keys(self) -> MultiFernet:
        if not self._keys_given:
            raise SecretsUnavailable(
                f"secrets need {KEY_SETTING}: this Kiln has no key to encrypt or decrypt them"
            )
        if self._fernet is None:  # two threads may both get here: each makes the same keys
            from cryptography.fernet import Fernet, MultiFernet

            self._fernet = MultiFernet([Fernet(key) for key in self._keys_given])
        return self._fernet

    def seal(self, value: str, context: str) -> str:
        """`value`, encrypted and authenticated, bound to `context`."""
        return self._keys().encrypt(_framed(context, value)).decode("ascii")

    def open(self, sealed: str, context: str) -> str:
        """The value sealed for `context`; UnreadableSecret when no key opens it or it was
        sealed for something else."""
        keys = self._keys()
        from cryptography.fernet import InvalidToken

        try:
            plain = keys.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise UnreadableSecret(
                f"a stored secret could not be decrypted with {KEY_SETTING} (was the key "
                "replaced without keeping the old one after it, in the list?)"
            ) from None
        head, _, value = plain.partition(b"\0")
        if not hmac.compare_digest(head, context.encode()):
            raise UnreadableSecret("a stored secret was sealed for something else")
        return value.decode()

    def reseal(self, sealed: str) -> str:
        """The same value sealed with the newest key (key rotation)."""
        keys = self._keys()
        from cryptography.fernet import InvalidToken

        try:
            return keys.rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise UnreadableSecret(
                f"a stored secret could not be decrypted with {KEY_SETTING}"
            ) from None


def _framed(context: str, value: str) -> bytes:
    if "\0" in context:
        raise ValueError("a context may not contain NUL")
    return context.encode() + b"\0" + value.encode()
