"""Which errors Temporal retries: the hierarchy in kiln.errors, mapped in activities.errors."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError, CancelledError

from activities.errors import PERMANENT_ERROR, temporal_errors
from kiln.containers import ContainerError, ImageUnavailable
from kiln.errors import (
    AttemptSuperseded,
    BuildCanceled,
    KilnError,
    PermanentError,
    RetryableError,
    StopRequested,
)
from kiln.git import GitRefused, GitUnavailable, git_error
from kiln.repos import RepoForbidden, RepoRefused, RepoUnresolvable


class NoSuchImage(PermanentError):
    pass


class DaemonRestarting(RetryableError):
    pass


def test_a_permanent_error_becomes_a_non_retryable_application_error_of_permanent_type() -> None:
    with pytest.raises(ApplicationError) as caught, temporal_errors():
        raise NoSuchImage("image 'nope' not found")
    assert caught.value.non_retryable is True
    assert caught.value.type == PERMANENT_ERROR == "KilnPermanentError"
    assert caught.value.message == "image 'nope' not found"


def test_a_retryable_error_becomes_a_retryable_application_error_named_for_its_class() -> None:
    with pytest.raises(ApplicationError) as caught, temporal_errors():
        raise DaemonRestarting("docker daemon restarting")
    assert caught.value.non_retryable is False
    assert caught.value.type == "DaemonRestarting"
    assert caught.value.message == "docker daemon restarting"


@pytest.mark.parametrize("stop", [BuildCanceled, AttemptSuperseded])
def test_a_requested_stop_becomes_temporals_cancelled_error(stop: type[StopRequested]) -> None:
    with pytest.raises(CancelledError) as caught, temporal_errors():
        raise stop("stop now")
    assert "stop now" in str(caught.value)


@pytest.mark.parametrize("error", [ValueError("odd"), KilnError("unclassified"), KeyError("k")])
def test_any_other_exception_passes_through_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as caught, temporal_errors():
        raise error
    assert caught.value is error


def test_the_mapping_does_nothing_when_the_work_succeeds() -> None:
    done = []
    with temporal_errors():
        done.append(True)
    assert done == [True]


def test_a_git_refusal_is_permanent_and_git_being_unreachable_is_retryable() -> None:
    assert issubclass(GitRefused, PermanentError) and not issubclass(GitRefused, RetryableError)
    assert issubclass(GitUnavailable, RetryableError)
    assert not issubclass(GitUnavailable, PermanentError)
    assert git_error("no such ref", permanent=True).permanent is True
    assert isinstance(git_error("timed out", permanent=False), GitUnavailable)
    assert git_error("timed out", permanent=False).permanent is False


def test_a_forbidden_repo_url_is_permanent_and_an_unresolvable_one_retryable() -> None:
    assert issubclass(RepoForbidden, PermanentError) and issubclass(RepoForbidden, RepoRefused)
    assert issubclass(RepoUnresolvable, RetryableError)
    assert issubclass(RepoUnresolvable, RepoRefused)
    assert not issubclass(RepoUnresolvable, PermanentError)


def test_a_missing_image_is_permanent_and_docker_trouble_retryable() -> None:
    assert issubclass(ImageUnavailable, PermanentError)
    assert not issubclass(ImageUnavailable, RetryableError)
    assert issubclass(ContainerError, RetryableError)
    assert not issubclass(ContainerError, PermanentError)


@pytest.mark.parametrize(
    ("error", "retryable", "kind"),
    [
        (GitRefused("branch 'x' not found"), False, PERMANENT_ERROR),
        (GitUnavailable("git fetch timed out"), True, "GitUnavailable"),
        (RepoForbidden("repoUrl is a private address"), False, PERMANENT_ERROR),
        (RepoUnresolvable("could not be resolved"), True, "RepoUnresolvable"),
        (ImageUnavailable("image not on this host"), False, PERMANENT_ERROR),
        (ContainerError("container vanished"), True, "ContainerError"),
    ],
)
def test_each_classified_error_reaches_temporal_with_its_retry_decision(
    error: KilnError, retryable: bool, kind: str
) -> None:
    with pytest.raises(ApplicationError) as caught, temporal_errors():
        raise error
    assert caught.value.non_retryable is not retryable
    assert caught.value.type == kind
    assert caught.value.message == str(error)
