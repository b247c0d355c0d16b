"""GitHub push deliveries (kiln.webhooks): whose secret signed them, which repository they
name, and what push they describe."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from kiln.webhooks import NO_COMMIT, Push, parse_push, repository_keys, signed_by

SECRET = "project-webhook-secret"
BODY = b'{"ref":"refs/heads/main"}'
HEAD = "c" * 40


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_body_signed_with_the_projects_secret_is_signed_by_it() -> None:
    assert signed_by(SECRET, BODY, signature(SECRET, BODY)) is True


def test_a_signature_by_another_secret_is_not_valid() -> None:
    assert signed_by(SECRET, BODY, signature("someone-else", BODY)) is False


def test_a_signature_of_another_body_is_not_valid() -> None:
    assert signed_by(SECRET, BODY, signature(SECRET, BODY + b" ")) is False


@pytest.mark.parametrize(
    "garbled",
    [
        "",
        "sha256=",
        "sha256=zz",
        signature(SECRET, BODY).upper(),
        signature(SECRET, BODY).removeprefix("sha256="),
        "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(),
        "sha256=é" + "0" * 63,
    ],
)
def test_a_garbled_signature_is_not_valid_and_does_not_raise(garbled: str) -> None:
    assert signed_by(SECRET, BODY, garbled) is False


def test_a_payload_names_its_repository_by_both_of_githubs_urls() -> None:
    payload = {
        "repository": {
            "clone_url": "https://github.com/Octo/App.git",
            "html_url": "https://github.com/Octo/App",
        }
    }
    assert repository_keys(payload) == {"https://github.com/Octo/App"}


def test_a_payload_with_differing_urls_yields_a_key_for_each() -> None:
    payload = {
        "repository": {
            "clone_url": "https://github.com/octo/app.git",
            "html_url": "https://mirror.example/octo/app",
        }
    }
    assert repository_keys(payload) == {
        "https://github.com/octo/app",
        "https://mirror.example/octo/app",
    }


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"repository": None},
        {"repository": "https://github.com/octo/app"},
        {"repository": ["https://github.com/octo/app"]},
        {"repository": {"clone_url": 5, "html_url": None}},
        {"repository": {"clone_url": "", "html_url": ""}},
        {"repository": {"clone_url": "https://github.com:bad/o/r.git"}},
    ],
)
def test_a_payload_without_a_usable_repository_names_none(payload: dict[str, Any]) -> None:
    assert repository_keys(payload) == set()


def test_an_unparseable_url_is_skipped_and_the_other_still_counts() -> None:
    payload = {
        "repository": {
            "clone_url": "https://github.com:bad/o/r.git",
            "html_url": "https://github.com/o/r",
        }
    }
    assert repository_keys(payload) == {"https://github.com/o/r"}


def push_payload(**fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ref": "refs/heads/main",
        "after": HEAD,
        "deleted": False,
        "head_commit": {"message": "Fix the build\n\nDetails", "author": {"name": "Ada"}},
    }
    payload.update(fields)
    return payload


def test_a_push_to_a_branch_is_its_branch_head_commit_message_and_author() -> None:
    assert parse_push(push_payload()) == Push(
        branch="main", after=HEAD, message="Fix the build\n\nDetails", author="Ada"
    )


def test_a_branch_name_with_slashes_is_kept_whole() -> None:
    push = parse_push(push_payload(ref="refs/heads/feature/login"))
    assert push is not None and push.branch == "feature/login"


def test_a_sha256_head_is_accepted() -> None:
    push = parse_push(push_payload(after="d" * 64))
    assert push is not None and push.after == "d" * 64


@pytest.mark.parametrize(
    "fields",
    [
        {"ref": "refs/tags/v1.0"},
        {"ref": "main"},
        {"ref": "refs/remotes/origin/main"},
        {"ref": None},
        {"ref": ["refs/heads/main"]},
        {"deleted": True},
        {"after": NO_COMMIT},
        {"after": "c" * 7},
        {"after": "C" * 40},
        {"after": "not-a-sha"},
        {"after": None},
        {"after": 1234},
    ],
)
def test_tags_deletions_and_pushes_without_a_full_new_commit_build_nothing(
    fields: dict[str, Any],
) -> None:
    assert parse_push(push_payload(**fields)) is None


def test_a_payload_missing_ref_or_after_builds_nothing() -> None:
    assert parse_push({"after": HEAD}) is None
    assert parse_push({"ref": "refs/heads/main"}) is None
    assert parse_push({}) is None


@pytest.mark.parametrize(
    "head_commit",
    [None, "a string", ["list"], {}, {"message": None, "author": None}, {"author": "Ada"}],
)
def test_a_missing_or_odd_head_commit_leaves_message_and_author_empty(head_commit: Any) -> None:
    push = parse_push(push_payload(head_commit=head_commit))
    assert push == Push(branch="main", after=HEAD, message="", author="")


def test_an_author_without_a_name_is_empty() -> None:
    push = parse_push(push_payload(head_commit={"message": "m", "author": {"email": "a@b.c"}}))
    assert push is not None and (push.message, push.author) == ("m", "")
