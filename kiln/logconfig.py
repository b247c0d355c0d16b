"""How every Kiln process logs: readable text by default, one JSON object a line with
`KILN_LOG_FORMAT=json`, and never a secret in either.

Each line carries the ids of what it is about, where they apply: `requestId` (set by the API's
middleware for the request being answered), `buildId`, `projectId` and `workflowId`. They come
from context variables (`log_context`) and from context sources an entry point registers
(`add_context_source`: the worker reads the running Temporal activity's ids there, which keeps
Temporal out of the core).

Every record passes `RedactSecrets` on the way out, whatever logger it came from (uvicorn's,
SQLAlchemy's, Temporal's): credentials in URLs, `Authorization` values, bearer tokens,
JWT-shaped strings, Kiln API tokens, argon2 hashes, `password=`/`token=`/`secret=` values and the
bound parameters SQLAlchemy prints in its errors are replaced before a formatter sees them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from kiln.git import redact as redact_url_credentials

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("kiln_request_id", default=None)
BUILD_ID: ContextVar[int | None] = ContextVar("kiln_build_id", default=None)
PROJECT_ID: ContextVar[int | None] = ContextVar("kiln_project_id", default=None)
WORKFLOW_ID: ContextVar[str | None] = ContextVar("kiln_workflow_id", default=None)

# The ids a line may carry, by their name in the JSON object.
CONTEXT_FIELDS: dict[str, ContextVar[Any]] = {
    "requestId": REQUEST_ID,
    "buildId": BUILD_ID,
    "projectId": PROJECT_ID,
    "workflowId": WORKFLOW_ID,
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED = "[redacted]"

# A source of ids for a record (e.g. the Temporal activity it was logged in); None or {} when
# it has none. It must be cheap and must not log.
ContextSource = Callable[[logging.LogRecord], Mapping[str, Any] | None]
_sources: list[ContextSource] = []


@contextmanager
def log_context(
    *,
    request_id: str | None = None,
    build_id: int | None = None,
    project_id: int | None = None,
    workflow_id: str | None = None,
) -> Iterator[None]:
    """Lines logged inside carry these ids (those given; the others stay as they were)."""
    values: list[tuple[ContextVar[Any], Any]] = [
        (REQUEST_ID, request_id),
        (BUILD_ID, build_id),
        (PROJECT_ID, project_id),
        (WORKFLOW_ID, workflow_id),
    ]
    tokens = [(var, var.set(value)) for var, value in values if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def add_context_source(source: ContextSource) -> None:
    """Ids for each record from somewhere the core does not know (idempotent)."""
    if source not in _sources:
        _sources.append(source)


def context_ids(record: logging.LogRecord | None = None) -> dict[str, Any]:
    """The ids that apply to `record` now: context sources first, context variables win."""
    ids: dict[str, Any] = {}
    if record is not None:
        for source in list(_sources):
            try:
                found = source(record)
            except Exception:  # a broken source must never cost the line
                continue
            if found:
                ids.update({k: v for k, v in found.items() if k in CONTEXT_FIELDS and v})
    for name, var in CONTEXT_FIELDS.items():
        value = var.get()
        if value is not None:
            ids[name] = value
    return ids


# --- secrets -----------------------------------------------------------------------------------

_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # user:password@ (or a token@) in any URL: git remotes, database URLs, webhooks.
    (re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/@\s'\"<>]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
    # The value of an Authorization header (`Bearer x`, `Basic x`, `token x`, or a bare value).
    (
        re.compile(
            r"(\bauthorization[\"']?\s*[:=]\s*[\"']?)(?:[A-Za-z-]+\s+)?[^\s\"',;)}\]]+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1{REDACTED}"),
    # JWTs: three base64url parts, the first a JSON object ("eyJ").
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Kiln API tokens (`kiln_` and a long random part).
    (re.compile(r"\bkiln_[A-Za-z0-9_-]{20,}"), REDACTED),
    # Password hashes are credentials too.
    (re.compile(r"\$argon2(?:id|i|d)\$[^\s'\",)]+"), REDACTED),
    # password=..., "token": "...", KILN_JWT_SECRET=..., ?access_token=... (any such key).
    (
        re.compile(
            r"((?:\b|_)[\w.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|credentials?)"
            r"[\"']?\s*[:=]\s*)(?![\"']?\[redacted\])(\"[^\"]*\"|'[^']*'|[^\s,;&\"'<>)}\]]+)",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    # SQLAlchemy prints a failed statement's bound values: they may hold any of the above.
    (re.compile(r"\[parameters: [^\n]*\]"), f"[parameters: {REDACTED}]"),
]


# A word every pattern above (and kiln.git's) needs, in lower case: ASCII text without any of
# them has nothing to redact, and skips the patterns. That is most lines (an access line, a
# build's progress): the patterns cost 64 µs an access line, and run twice a line (message
# and formatted line), on a read that takes 1-2 ms in all. Only ASCII text: under IGNORECASE a
# pattern's "s" also matches "ſ", and its "i" matches "ı".
_NEEDED_WORDS = (
    "://",
    "authorization",
    "bearer",
    "eyj",
    "kiln_",
    "$argon2",
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "credential",
    "[parameters: ",
)


def redact_secrets(text: str) -> str:
    """`text` with every credential-shaped value replaced."""
    if text.isascii():
        lowered = text.lower()
        if not any(word in lowered for word in _NEEDED_WORDS):
            return text
    return _redact_all(text)


def _redact_all(text: str) -> str:
    text = redact_url_credentials(text)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, exception and stack text without their secrets (in place,
    so every formatter and handler after it sees the redacted text only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: logging reports that itself; keep the raw text
            message = str(record.msg)
        record.msg = redact_secrets(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


_PLAIN = logging.Formatter()


class AddContext(logging.Filter):
    """Puts the ids that apply on the record (`record.kiln_ids`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.kiln_ids = context_ids(record)
        return True


# --- formats -----------------------------------------------------------------------------------


def _ids_of(record: logging.LogRecord) -> dict[str, Any]:
    ids = getattr(record, "kiln_ids", None)
    return ids if isinstance(ids, dict) else context_ids(record)


class TextFormatter(logging.Formatter):
    """The readable default: time, level, logger, message, and the ids in brackets."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _ids_of(record)
        if ids:
            first, newline, rest = line.partition("\n")
            tags = " ".join(f"{name}={value}" for name, value in ids.items())
            line = f"{first} [{tags}]{newline}{rest}"
        return redact_secrets(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, the ids that apply, and
    the exception or stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_ids_of(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        clean = {k: redact_secrets(v) if isinstance(v, str) else v for k, v in entry.items()}
        return json.dumps(clean, ensure_ascii=False, default=str)


class KilnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler Kiln installs on the root logger."""


def make_handler(log_format: LogFormat, stream: Any = None) -> logging.Handler:
    handler = KilnHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(AddContext())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configured_format() -> LogFormat:
    """`KILN_LOG_FORMAT`, read afresh (the cached settings may not exist yet)."""
    from kiln.settings import Settings

    try:
        return Settings().log_format
    except Exception:  # another setting is invalid: the command says so itself, readably
        raw = os.environ.get("KILN_LOG_FORMAT", "").strip().lower()
        return "json" if raw == "json" else "text"


def configure_logging(
    log_format: LogFormat | None = None, *, level: int = logging.INFO, stream: Any = None
) -> logging.Handler:
    """Send every logger's records (the root's handlers) through one redacting handler in the
    chosen format; calling it again replaces that handler. Returns it."""
    chosen = log_format or configured_format()
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler = make_handler(chosen, stream)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    _route_uvicorn_logs()
    return handler


def _route_uvicorn_logs() -> None:
    """uvicorn configures its own loggers, with handlers of their own that do not propagate,
    when `uvicorn.run` is called without `log_config=None`: their lines would escape the JSON
    format and the redaction. Make its default configuration hand them to the root logger."""
    try:
        from uvicorn.config import LOGGING_CONFIG
    except ImportError:  # not a process that serves HTTP
        return
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        LOGGING_CONFIG.setdefault("loggers", {})[name] = {
            "handlers": [],
            "level": "INFO",
            "propagate": True,
        }
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.propagate = True
