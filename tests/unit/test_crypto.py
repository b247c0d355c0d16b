"""Sealing secrets at rest (kiln.crypto): Fernet under KILN_SECRETS_KEY, a value bound to what
it is, keys rotated newest first."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from kiln.crypto import (
    InvalidSecretsKey,
    SecretBox,
    SecretsUnavailable,
    UnreadableSecret,
    generate_key,
)

VALUE = "npm_Tok3n-value with spaces "


def test_a_sealed_value_opens_again_and_shows_nothing_of_itself() -> None:
    box = SecretBox(generate_key())

    sealed = box.seal(VALUE, "secret:1:NPM_TOKEN")

    assert VALUE not in sealed and "npm_Tok3n" not in sealed
    assert box.open(sealed, "secret:1:NPM_TOKEN") == VALUE


def test_sealing_twice_gives_two_different_tokens() -> None:
    box = SecretBox(generate_key())
    assert box.seal(VALUE, "c") != box.seal(VALUE, "c")


def test_a_value_sealed_for_one_secret_does_not_open_as_another() -> None:
    """A sealed value copied into another project's row (or under another name) is refused."""
    box = SecretBox(generate_key())
    sealed = box.seal(VALUE, "secret:1:NPM_TOKEN")

    for other in ("secret:2:NPM_TOKEN", "secret:1:OTHER", "secret:1:NPM_TOKE", "git:1"):
        with pytest.raises(UnreadableSecret):
            box.open(sealed, other)


def test_another_key_or_a_tampered_token_does_not_open_a_value() -> None:
    sealed = SecretBox(generate_key()).seal(VALUE, "c")
    with pytest.raises(UnreadableSecret) as caught:
        SecretBox(generate_key()).open(sealed, "c")
    assert "KILN_SECRETS_KEY" in str(caught.value)

    box = SecretBox(generate_key())
    token = box.seal(VALUE, "c")
    tampered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    with pytest.raises(UnreadableSecret):
        box.open(tampered, "c")
    with pytest.raises(UnreadableSecret):
        box.open("not a token ✓", "c")


def test_without_a_key_nothing_is_sealed_or_opened_and_the_message_names_the_setting() -> None:
    box = SecretBox("")
    assert not box.available
    with pytest.raises(SecretsUnavailable) as caught:
        box.seal(VALUE, "c")
    assert "KILN_SECRETS_KEY" in str(caught.value)
    with pytest.raises(SecretsUnavailable):
        box.open("gAAAA", "c")


@pytest.mark.parametrize("bad", ["changeme", "x" * 44, "a,b", generate_key()[:-2]])
def test_a_malformed_key_is_refused_without_repeating_it(bad: str) -> None:
    with pytest.raises(InvalidSecretsKey) as caught:
        SecretBox(bad)
    assert bad not in str(caught.value)
    assert "KILN_SECRETS_KEY" in str(caught.value)


_RAW = bytes(range(32))
KEY_CANDIDATES = [
    base64.urlsafe_b64encode(_RAW).decode(),
    base64.urlsafe_b64encode(_RAW).decode().rstrip("="),  # padding dropped
    base64.b64encode(bytes([251]) * 32).decode(),  # standard alphabet: "+" and "/"
    base64.urlsafe_b64encode(_RAW[:31]).decode(),
    base64.urlsafe_b64encode(_RAW + b"x").decode(),
    base64.urlsafe_b64encode(_RAW).decode()[:20]
    + "!"
    + base64.urlsafe_b64encode(_RAW).decode()[20:],
    "=" * 44,
]


@pytest.mark.parametrize("key", KEY_CANDIDATES)
def test_a_key_is_taken_exactly_when_fernet_takes_it(key: str) -> None:
    """The keys are checked at start without loading `cryptography`: the same check as its."""
    try:
        Fernet(key.encode())
    except ValueError:
        with pytest.raises(InvalidSecretsKey):
            SecretBox(key)
    else:
        box = SecretBox(key)
        assert box.open(box.seal(VALUE, "c"), "c") == VALUE


def test_a_rotated_key_list_opens_old_values_and_reseals_them_with_the_newest_key() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = SecretBox(old).seal(VALUE, "c")

    both = SecretBox(f"{new}, {old}")  # newest first; spaces around commas are fine
    assert both.open(sealed_old, "c") == VALUE
    resealed = both.reseal(sealed_old)

    assert SecretBox(new).open(resealed, "c") == VALUE
    with pytest.raises(UnreadableSecret):
        SecretBox(old).open(resealed, "c")
    # New values are sealed with the first key of the list.
    assert SecretBox(new).open(both.seal("fresh", "c"), "c") == "fresh"
