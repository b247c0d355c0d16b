"""Kiln's errors as Temporal sees them — the one place they are mapped (see `kiln.errors`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError, CancelledError

from kiln.errors import PermanentError, RetryableError, StopRequested

# ApplicationError type the workflow's retry policy treats as "this build cannot succeed".
PERMANENT_ERROR = "KilnPermanentError"


@contextmanager
def temporal_errors() -> Iterator[None]:
    """Permanent → non-retryable ApplicationError; retryable → a retryable one named for its
    class; a stop → Temporal's CancelledError. Anything else propagates (and is retried)."""
    try:
        yield
    except PermanentError as exc:
        raise ApplicationError(str(exc), type=PERMANENT_ERROR, non_retryable=True) from None
    except RetryableError as exc:
        raise ApplicationError(str(exc), type=type(exc).__name__) from None
    except StopRequested as exc:
        raise CancelledError(str(exc)) from None
