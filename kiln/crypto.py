"""Encryption of project secrets and git credentials at rest: Fernet (AES-128-CBC with an
HMAC-SHA256, from `cryptography`) under the keys of `KILN_SECRETS_KEY`.

`KILN_SECRETS_KEY` is a comma-separated list of Fernet keys, newest first: values are sealed
with the first key, and any of them opens a value (`MultiFernet`), so a key is rotated by
putting a new one in front, re-sealing (`SecretStore.rotate`), then dropping the old one.

Each value is sealed together with what it is (its `context`, e.g. `secret:12:NPM_TOKEN`) and
opened only as that: a sealed value copied to another row or project does not open there.
"""

from __future__ import annotations

import binascii
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from kiln.errors import PermanentError

KEY_SETTING = "KILN_SECRETS_KEY"


class SecretsUnavailable(PermanentError):
    """This Kiln has no (usable) KILN_SECRETS_KEY: secrets can be neither sealed nor opened."""


class UnreadableSecret(PermanentError):
    """A sealed value that none of the configured keys opens (or sealed for something else)."""


class InvalidSecretsKey(ValueError):
    """KILN_SECRETS_KEY is set but is not a list of Fernet keys."""


def generate_key() -> str:
    """A new random key, in the form KILN_SECRETS_KEY takes."""
    return Fernet.generate_key().decode()


def parse_keys(value: str) -> list[Fernet]:
    """The keys of a KILN_SECRETS_KEY value, newest first; InvalidSecretsKey when one is not a
    Fernet key (32 bytes, url-safe base64). The message never repeats the value."""
    keys = []
    for position, text in enumerate((part.strip() for part in value.split(",")), start=1):
        if not text:
            continue
        try:
            keys.append(Fernet(text.encode()))
        except (ValueError, binascii.Error):
            raise InvalidSecretsKey(
                f"{KEY_SETTING}: key {position} is not a Fernet key (32 random bytes, url-safe "
                'base64: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None
    return keys


class SecretBox:
    """Seals and opens values under the configured keys."""

    def __init__(self, keys: str) -> None:
        parsed = parse_keys(keys)
        self._fernet = MultiFernet(parsed) if parsed else None

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def _keys(self) -> MultiFernet:
        if self._fernet is None:
            raise SecretsUnavailable(
                f"secrets need {KEY_SETTING}: this Kiln has no key to encrypt or decrypt them"
            )
        return self._fernet

    def seal(self, value: str, context: str) -> str:
        """`value`, encrypted and authenticated, bound to `context`."""
        return self._keys().encrypt(_framed(context, value)).decode("ascii")

    def open(self, sealed: str, context: str) -> str:
        """The value sealed for `context`; UnreadableSecret when no key opens it or it was
        sealed for something else."""
        try:
            plain = self._keys().decrypt(sealed.encode("ascii"))
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
        try:
            return self._keys().rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise UnreadableSecret(
                f"a stored secret could not be decrypted with {KEY_SETTING}"
            ) from None


def _framed(context: str, value: str) -> bytes:
    if "\0" in context:
        raise ValueError("a context may not contain NUL")
    return context.encode() + b"\0" + value.encode()
