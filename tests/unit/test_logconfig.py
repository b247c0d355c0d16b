"""Kiln's log lines: readable text or one JSON object a line, with the ids that apply, and never
a secret — whatever logger the line comes from and whatever the secret is shaped like."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from kiln import logconfig
from kiln.logconfig import (
    add_context_source,
    configure_logging,
    log_context,
    make_handler,
    redact_secrets,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImV4cCI6MTc5OTk5OTk5OX0"
    ".c2lnbmF0dXJlLXRoYXQtaXMtbG9uZy1lbm91Z2g"
)
API_TOKEN = "kiln_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"
ARGON2 = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

# (what is logged, the secret in it that must not come out)
LEAKS = [
    ("cloning https://jane:ghp_s3cretT0ken@github.com/jane/app.git", "ghp_s3cretT0ken"),
    ("db at postgresql+psycopg://kiln_api:pg-Pa55word@postgres:5432/kiln", "pg-Pa55word"),
    ("headers {'Authorization': 'Bearer abc.def-ghi_jkl'}", "abc.def-ghi_jkl"),
    ("authorization: Basic amFuZTpodW50ZXIy", "amFuZTpodW50ZXIy"),
    (f"socket handshake token {JWT} refused", JWT),
    (f"GET /socket.io/?EIO=4&transport=polling&token={JWT[:40]}x HTTP/1.1", JWT[:40]),
    (f"login with {API_TOKEN}", API_TOKEN),
    ('body {"email": "jane@example.com", "password": "hunter2 hunter2"}', "hunter2"),
    ("KILN_JWT_SECRET=0123456789abcdef0123", "0123456789abcdef0123"),
    ("webhook_secret='9f8e7d6c5b4a'", "9f8e7d6c5b4a"),
    (f"[SQL: INSERT INTO users ...]\n[parameters: ('jane', '{ARGON2}')]", ARGON2),
    (f"hash {ARGON2}", ARGON2),
]


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def emit(log_format: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = make_handler("json" if log_format == "json" else "text", stream)
    logger = logging.getLogger(f"kiln.test.{log_format}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    try:
        if exc is not None:
            try:
                raise exc
            except BaseException:
                logger.exception(*args)
        else:
            logger.warning(*args)
    finally:
        logger.handlers.clear()
    return stream.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(("text", "secret"), LEAKS, ids=[secret[:12] for _, secret in LEAKS])
def test_no_secret_reaches_a_line_in_either_format(log_format: str, text: str, secret: str) -> None:
    out = emit(log_format, "%s", text)
    assert secret not in out
    assert "[redacted]" in out


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_in_an_exception_and_its_traceback_are_redacted(log_format: str) -> None:
    out = emit(
        log_format,
        "clone failed",
        exc=RuntimeError(f"git clone https://x:tok3n-abc@example.com/r.git failed; {JWT}"),
    )
    assert "tok3n-abc" not in out and JWT not in out
    assert "RuntimeError" in out


def test_a_json_line_is_one_object_with_time_level_logger_message_and_the_ids() -> None:
    with log_context(request_id="req-1", build_id=7, project_id=3, workflow_id="build-7"):
        out = emit("json", "multi\nline %s", "message")
    lines = out.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "multi\nline message"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "kiln.test.json"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert (entry["requestId"], entry["buildId"], entry["projectId"], entry["workflowId"]) == (
        "req-1",
        7,
        3,
        "build-7",
    )


def test_ids_apply_only_inside_their_context() -> None:
    with log_context(build_id=9):
        inside = json.loads(emit("json", "in"))
    outside = json.loads(emit("json", "out"))
    assert inside["buildId"] == 9
    assert "buildId" not in outside and "requestId" not in outside


def test_an_exception_is_one_json_line_with_its_traceback() -> None:
    out = emit("json", "boom", exc=ValueError("bad"))
    assert len(out.splitlines()) == 1
    entry = json.loads(out)
    assert "ValueError: bad" in entry["exception"] and "Traceback" in entry["exception"]


def test_text_stays_readable_with_the_ids_in_brackets() -> None:
    with log_context(request_id="abc123", build_id=5):
        out = emit("text", "build %s started", 5)
    assert " WARNING kiln.test.text build 5 started [requestId=abc123 buildId=5]" in out


def test_a_context_source_adds_ids_and_a_broken_one_costs_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logconfig, "_sources", [])

    def broken(_record: logging.LogRecord) -> dict[str, object]:
        raise RuntimeError("no")

    def activity_ids(record: logging.LogRecord) -> dict[str, object] | None:
        return {"workflowId": "p-build-12", "buildId": 12} if record.msg == "in activity" else None

    add_context_source(broken)
    add_context_source(activity_ids)
    assert json.loads(emit("json", "in activity"))["buildId"] == 12
    assert "buildId" not in json.loads(emit("json", "elsewhere"))


def test_a_redacted_value_is_redacted_once() -> None:
    assert redact_secrets(f"GET /x?access_token={JWT}&a=1") == "GET /x?access_token=[redacted]&a=1"
    assert redact_secrets(f'{{"token": "{JWT}"}}') == '{"token": "[redacted]"}'


def test_ordinary_text_is_left_alone() -> None:
    for text in [
        "password authentication failed for user kiln",
        "the authentication token is missing",
        "build 12 passed in 3.2s on host-a (kiln_test_0123456789 database)",
        "GET /api/build/12/logs?offset=100 HTTP/1.1 200",
    ]:
        assert redact_secrets(text) == text


def _variants(text: str) -> list[str]:
    return [text, text.upper(), text.lower(), text.swapcase(), f"x{text}y", f"{text}\n{text}"]


# Each leak once more, cut down to what its pattern needs, and lines that are nearly leaks.
NEAR_LEAKS = [
    "https://a@b",
    "git://u:p@h/x",
    "Authorization=x",
    "authorization: Bearer y",
    "bearer q",
    "eyJabcd.efgh.ij",
    "kiln_" + "a" * 20,
    "$argon2i$x",
    "pwd=1",
    "passwd: 2",
    "apikey=3",
    "api-key=4",
    "API_KEY=5",
    "credential=6",
    "credentials: 7",
    "my_secret='8'",
    "access_token=9",
    "[parameters: (1, 2)]",
    "paſſword=10",  # non-ASCII: the patterns always run
    "authorızation: 11",
]


@pytest.mark.parametrize(
    "text",
    [v for text, _ in LEAKS for v in _variants(text)]
    + [v for text in NEAR_LEAKS for v in _variants(text)],
)
def test_the_quick_check_never_skips_a_line_the_patterns_would_change(text: str) -> None:
    # `redact_secrets` skips the patterns for text without the words they need.
    assert redact_secrets(text) == logconfig._redact_all(text)


@pytest.mark.parametrize("text", NEAR_LEAKS)
def test_each_near_leak_is_one_the_patterns_change(text: str) -> None:
    assert redact_secrets(text) != text


def test_configure_logging_routes_every_logger_and_uvicorns_own_through_one_handler(
    root_logger: logging.Logger,
) -> None:
    import uvicorn.config

    stream = io.StringIO()
    configure_logging("json", stream=stream)
    configure_logging("json", stream=stream)  # again: still one handler
    assert len(root_logger.handlers) == 1
    # uvicorn applies its default logging configuration when it starts a server.
    uvicorn.config.Config(app=lambda *_: None, log_level="info")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/x?token={JWT}", "1.1", 200
    )
    logging.getLogger("sqlalchemy.engine").warning("password=%s", "s3cr3t-pw")
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [entry["logger"] for entry in entries] == ["uvicorn.access", "sqlalchemy.engine"]
    assert JWT not in stream.getvalue() and "s3cr3t-pw" not in stream.getvalue()
