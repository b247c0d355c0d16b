"""Kiln's exception hierarchy: what went wrong, and whether trying again could help.

    KilnError
    ├── PermanentError      retrying cannot succeed (no such repository or commit, a missing
    │                       image, a refused URL): the build ends `failed` with the reason
    ├── RetryableError      it may pass (a refused connection, a timeout, Docker trouble):
    │                       Temporal retries the step with back-off
    ├── StopRequested       the current attempt must stop
    │   ├── BuildCanceled       the build itself was canceled: its container is stopped
    │   └── AttemptSuperseded   this attempt is no longer current (a worker shutting down, a
    │                           retry took over): its container is left to the current attempt
    └── RequestError        what a caller asked for cannot be done (the API's 4xx)
        ├── NotFound            no such thing (404)
        ├── Forbidden           it is someone else's (403)
        └── Conflict            not in this state (409)

Errors are classified where they arise (`kiln.git`, `kiln.repos`, `kiln.containers`); the
activities map them to Temporal's `ApplicationError` in one place (`activities.errors`).
"""

from __future__ import annotations


class KilnError(Exception):
    """Base of every error Kiln raises on purpose."""


class PermanentError(KilnError):
    """Trying again cannot succeed."""


class RetryableError(KilnError):
    """Trying again may succeed."""


class StopRequested(KilnError):
    """The running attempt of a build must stop."""


class BuildCanceled(StopRequested):
    """The build was canceled by its owner (or its project was deleted)."""


class AttemptSuperseded(StopRequested):
    """This attempt is no longer the current one; its container runs on for the next."""


class RequestError(KilnError):
    """A caller asked for something that cannot be done; the message is shown to them."""


class NotFound(RequestError):
    pass


class Forbidden(RequestError):
    pass


class Conflict(RequestError):
    pass
