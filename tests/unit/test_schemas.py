"""Request bodies the API accepts (api.schemas): what is refused before anything runs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from api.schemas import (
    DEFAULT_BUILD_COMMAND,
    DEFAULT_IMAGE,
    MAX_TIMEOUT_SECONDS,
    LoginIn,
    ProjectIn,
    ProjectPatch,
    RegisterIn,
)
from kiln.models import DEFAULT_TIMEOUT_SECONDS

REPO = "https://github.com/octo/app.git"


def project(**fields: Any) -> ProjectIn:
    return ProjectIn.model_validate({"name": "app", "repoUrl": REPO, **fields})


def refused_field(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.errors()[0]["loc"])


def test_a_project_needs_only_a_name_and_a_repo_url() -> None:
    body = project()
    assert body.branch == "main"
    assert body.image == DEFAULT_IMAGE
    assert body.buildCommand == DEFAULT_BUILD_COMMAND
    assert body.timeoutSeconds == DEFAULT_TIMEOUT_SECONDS
    assert body.maxConcurrentBuilds == 1


@pytest.mark.parametrize("branch", ["feature/x", "release-1.2", "main", "v1.0_rc", "ÄÖ/ü"])
def test_ordinary_branch_names_are_accepted(branch: str) -> None:
    assert project(branch=branch).branch == branch


@pytest.mark.parametrize(
    "branch",
    [
        "-x",
        "--upload-pack=touch",
        "a..b",
        "x.lock",
        "x.",
        "x/",
        "feature x",
        "tab\there",
        "new\nline",
        *[f"a{c}b" for c in "~^:?*[\\"],
        "",
    ],
)
def test_branch_names_git_or_its_command_line_would_misread_are_refused(branch: str) -> None:
    with pytest.raises(ValidationError) as caught:
        project(branch=branch)
    assert refused_field(caught.value) == "branch"


def test_spaces_around_a_branch_name_are_dropped() -> None:
    assert project(branch="  main  ").branch == "main"


@pytest.mark.parametrize("image", ["busybox", "node:20-alpine", "ghcr.io/o/i@sha256:" + "a" * 64])
def test_plain_image_references_are_accepted(image: str) -> None:
    assert project(image=image).image == image
    assert ProjectPatch(image=image).image == image


@pytest.mark.parametrize("image", ["-v", "--privileged", "node 20", "node:20\talpine", ""])
def test_image_references_that_start_with_a_dash_or_hold_spaces_are_refused(image: str) -> None:
    with pytest.raises(ValidationError) as caught:
        project(image=image)
    assert refused_field(caught.value) == "image"
    with pytest.raises(ValidationError):
        ProjectPatch(image=image)


@pytest.mark.parametrize("seconds", [1, 60, MAX_TIMEOUT_SECONDS])
def test_timeouts_from_one_second_to_a_day_are_accepted(seconds: int) -> None:
    assert project(timeoutSeconds=seconds).timeoutSeconds == seconds
    assert ProjectPatch(timeoutSeconds=seconds).timeoutSeconds == seconds


@pytest.mark.parametrize("seconds", [0, -1, MAX_TIMEOUT_SECONDS + 1, "soon", 1.5])
def test_timeouts_outside_one_second_to_a_day_are_refused(seconds: Any) -> None:
    with pytest.raises(ValidationError):
        project(timeoutSeconds=seconds)
    with pytest.raises(ValidationError):
        ProjectPatch(timeoutSeconds=seconds)


@pytest.mark.parametrize("limit", [1, 100])
def test_one_to_a_hundred_concurrent_builds_are_accepted(limit: int) -> None:
    assert project(maxConcurrentBuilds=limit).maxConcurrentBuilds == limit


@pytest.mark.parametrize("limit", [0, 101, -3])
def test_concurrency_outside_one_to_a_hundred_is_refused(limit: int) -> None:
    with pytest.raises(ValidationError):
        project(maxConcurrentBuilds=limit)
    with pytest.raises(ValidationError):
        ProjectPatch(maxConcurrentBuilds=limit)


@pytest.mark.parametrize("missing", ["name", "repoUrl"])
def test_a_project_without_a_name_or_repo_url_is_refused(missing: str) -> None:
    body: dict[str, Any] = {"name": "app", "repoUrl": REPO}
    del body[missing]
    with pytest.raises(ValidationError) as caught:
        ProjectIn.model_validate(body)
    assert refused_field(caught.value) == missing


def test_a_blank_project_name_is_refused() -> None:
    with pytest.raises(ValidationError):
        project(name="   ")


def test_unknown_fields_are_refused_rather_than_ignored() -> None:
    with pytest.raises(ValidationError) as caught:
        project(webhookSecret="mine")
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        ProjectPatch.model_validate({"branch": "other"})
    with pytest.raises(ValidationError):
        RegisterIn.model_validate(
            {"email": "a@example.com", "password": "12345678", "name": "A", "admin": True}
        )


def test_a_patch_holds_only_the_fields_it_names() -> None:
    patch = ProjectPatch.model_validate({"name": "renamed", "maxConcurrentBuilds": 3})
    assert patch.model_dump(exclude_unset=True) == {"name": "renamed", "maxConcurrentBuilds": 3}
    assert ProjectPatch().model_dump(exclude_unset=True) == {}


def test_a_patch_keeps_an_explicit_null_for_the_route_to_refuse() -> None:
    patch = ProjectPatch.model_validate({"image": None})
    assert patch.model_dump(exclude_unset=True) == {"image": None}


def test_a_patch_applies_the_same_bounds_as_creation() -> None:
    with pytest.raises(ValidationError):
        ProjectPatch(name="")
    with pytest.raises(ValidationError):
        ProjectPatch(buildCommand="")


def register(password: str) -> RegisterIn:
    return RegisterIn.model_validate(
        {"email": "ada@example.com", "password": password, "name": "Ada"}
    )


def test_a_new_password_needs_at_least_eight_characters() -> None:
    assert register("12345678").password == "12345678"
    with pytest.raises(ValidationError) as caught:
        register("1234567")
    assert refused_field(caught.value) == "password"


def test_a_new_password_is_taken_as_typed_spaces_at_the_ends_included() -> None:
    assert register("  secret pw  ").password == "  secret pw  "


def test_spaces_count_towards_a_new_passwords_length() -> None:
    assert register("  abcd  ").password == "  abcd  "


def test_a_login_password_is_taken_as_typed() -> None:
    body = LoginIn.model_validate({"email": " ada@example.com ", "password": " pw "})
    assert body.password == " pw "
    assert body.email == "ada@example.com"


def test_a_registration_needs_a_valid_email() -> None:
    with pytest.raises(ValidationError) as caught:
        RegisterIn.model_validate({"email": "not-an-email", "password": "12345678", "name": "A"})
    assert refused_field(caught.value) == "email"


@pytest.mark.parametrize("branch", ["a\x00b", "a\x01b", "a\x7fb"])
def test_branch_names_with_control_characters_are_refused(branch: str) -> None:
    with pytest.raises(ValidationError):
        project(branch=branch)
