"""Builds in Temporal's UI: Kiln's search attributes, the one-line summary and details of each
build's workflow and the summaries of its steps, and registering the attributes in a namespace.

So an operator can run `temporal workflow list --query 'KilnProjectId=7 AND
KilnBuildStatus="failed"'`. Everything here is stored by Temporal in clear: the project's name,
branch, commit and the head of its command — never a secret, a token or a repository URL (which
may carry credentials).

SQL visibility (the dev server's, and SQL-backed servers') allows 3 Int and 10 Keyword custom
attributes per namespace: Kiln takes all 3 Int and 6 Keyword.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)
from temporalio.service import RPCError, RPCStatusCode

from kiln.contracts import BuildLabels, Trigger
from kiln.models import BuildStatus

log = logging.getLogger(__name__)

PROJECT_ID = SearchAttributeKey.for_int("KilnProjectId")
BUILD_ID = SearchAttributeKey.for_int("KilnBuildId")
EXIT_CODE = SearchAttributeKey.for_int("KilnExitCode")
PROJECT = SearchAttributeKey.for_keyword("KilnProject")
BRANCH = SearchAttributeKey.for_keyword("KilnBranch")
COMMIT = SearchAttributeKey.for_keyword("KilnCommit")
STATUS = SearchAttributeKey.for_keyword("KilnBuildStatus")
HOST = SearchAttributeKey.for_keyword("KilnHost")
TRIGGER = SearchAttributeKey.for_keyword("KilnTrigger")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    PROJECT_ID,
    BUILD_ID,
    EXIT_CODE,
    PROJECT,
    BRANCH,
    COMMIT,
    STATUS,
    HOST,
    TRIGGER,
)
# The names `temporal server start-dev --search-attribute Name=Type` takes.
_TYPE_NAMES = {
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
}

# Summaries are one line of at most this many bytes.
SUMMARY_BYTES = 200
# The commit message in a workflow's details is cut here.
MESSAGE_BYTES = 2000
# How long registering waits for Temporal to list what it registered.
REGISTERED_WAIT_SECONDS = 30.0


# --- Registering the attributes -----------------------------------------------------------


class SearchAttributesError(Exception):
    """Kiln's search attributes are missing from the namespace, or could not be registered."""


def type_name(key: SearchAttributeKey[Any]) -> str:
    """The key's type as Temporal's CLI names it (`Int`, `Keyword`)."""
    return _TYPE_NAMES[key.indexed_value_type]


def dev_server_args() -> list[str]:
    """`--search-attribute Name=Type` for each of Kiln's attributes."""
    args = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={type_name(key)}"]
    return args


async def _registered(client: Client, namespace: str) -> dict[str, int]:
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(answer.custom_attributes)


def _type_name(value: int) -> str:
    name: str = IndexedValueType.Name(value)  # type: ignore[arg-type]
    return name.removeprefix("INDEXED_VALUE_TYPE_").title()


def _check(found: dict[str, int]) -> tuple[list[SearchAttributeKey[Any]], list[str]]:
    """Kiln's attributes the namespace lacks, and those it has with another type (described)."""
    missing, conflicting = [], []
    for key in SEARCH_ATTRIBUTES:
        kind = found.get(key.name)
        if kind is None:
            missing.append(key)
        elif kind != int(key.indexed_value_type):
            conflicting.append(
                f"{key.name} is registered as {_type_name(kind)}, Kiln needs {type_name(key)}"
            )
    return missing, conflicting


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register those of Kiln's attributes the namespace lacks; returns their names (empty when
    all were there). Raises SearchAttributesError when one exists with another type (Temporal
    would silently keep it) or Temporal refuses (e.g. the namespace's Int attributes are
    taken)."""
    missing, conflicting = _check(await _registered(client, namespace))
    if conflicting:
        raise SearchAttributesError(
            f"namespace {namespace}: {'; '.join(conflicting)}. Remove it "
            "(`temporal operator search-attribute remove --name <name>`) and run `kiln migrate` "
            "again, or use another namespace (KILN_TEMPORAL_NAMESPACE)"
        )
    if not missing:
        return []
    request = AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={key.name: int(key.indexed_value_type) for key in missing},  # type: ignore[misc]
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as exc:
        names = ", ".join(key.name for key in missing)
        raise SearchAttributesError(
            f"Temporal refused to register {names} in namespace {namespace}: {exc.message}"
        ) from None
    # A server may list (and accept) new attributes a moment later: a worker started right
    # after `kiln migrate` must find them.
    deadline = time.monotonic() + REGISTERED_WAIT_SECONDS
    while _check(await _registered(client, namespace))[0]:
        if time.monotonic() > deadline:
            raise SearchAttributesError(
                f"Temporal accepted Kiln's search attributes in namespace {namespace} but does "
                f"not list them after {REGISTERED_WAIT_SECONDS:g}s; run `kiln migrate` again"
            )
        await asyncio.sleep(0.2)
    return [key.name for key in missing]


async def ensure_search_attributes(
    address: str, namespace: str, *, wait_seconds: float = 60
) -> list[str]:
    """`kiln migrate`'s step: connect (waiting up to `wait_seconds` for a Temporal that is
    still starting) and register what is missing; returns the names registered."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            client = await Client.connect(address, namespace=namespace)
            break
        except RuntimeError as exc:
            if time.monotonic() > deadline:
                raise SearchAttributesError(
                    f"Temporal at {address} could not be reached to register Kiln's search "
                    f"attributes ({exc})"
                ) from None
            await asyncio.sleep(1)
    return await register_search_attributes(client, namespace)


async def require_search_attributes(client: Client, namespace: str) -> None:
    """A worker's check at start: raises SearchAttributesError, naming `kiln migrate`, when any
    of Kiln's attributes is missing or has another type. A server that will not say (no
    permission to list them) is trusted, with a warning."""
    try:
        found = await _registered(client, namespace)
    except RPCError as exc:
        if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            log.warning("could not check Kiln's search attributes: %s", exc.message)
            return
        raise
    missing, conflicting = _check(found)
    if missing or conflicting:
        problems = list(conflicting)
        if missing:
            problems.append(f"missing {', '.join(key.name for key in missing)}")
        raise SearchAttributesError(
            f"Kiln's search attributes are not registered in Temporal namespace {namespace} "
            f"({'; '.join(problems)}): run `kiln migrate`, which registers them, then start "
            "the worker again"
        )


def explain_refusal(exc: RPCError) -> str | None:
    """What to do about a start Temporal refused for an unregistered attribute, else None."""
    if exc.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in exc.message:
        return f"{exc.message}: run `kiln migrate` to register Kiln's search attributes"
    return None


# --- At start ---------------------------------------------------------------------------------


def start_attributes(
    build_id: int, labels: BuildLabels | None, trigger: Trigger | None
) -> TypedSearchAttributes:
    """The attributes a build's workflow starts with (the workflow keeps status, host and exit
    code current)."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(BUILD_ID, build_id),
        SearchAttributePair(STATUS, BuildStatus.QUEUED.value),
    ]
    if trigger is not None:
        pairs.append(SearchAttributePair(TRIGGER, trigger.value))
    if labels is not None:
        pairs += [
            SearchAttributePair(PROJECT_ID, labels.project_id),
            SearchAttributePair(PROJECT, labels.project),
            SearchAttributePair(BRANCH, labels.branch),
            SearchAttributePair(COMMIT, labels.commit_hash),
        ]
    return TypedSearchAttributes(pairs)


def one_line(text: str, limit: int = SUMMARY_BYTES) -> str:
    """`text` on one line (runs of whitespace become one space), cut to `limit` bytes with an
    ellipsis, never inside a character."""
    flat = " ".join(text.split())
    if len(flat.encode()) <= limit:
        return flat
    return flat.encode()[: limit - len("…".encode())].decode(errors="ignore") + "…"


def _why(trigger: Trigger | None, rebuild_of: int | None) -> str | None:
    if trigger is Trigger.REBUILD:
        return f"rebuild of #{rebuild_of}" if rebuild_of is not None else "rebuild"
    if trigger is Trigger.PUSH:
        return "push"
    if trigger is Trigger.PROJECT:
        return "new project"
    return None


def summary(
    build_id: int, labels: BuildLabels | None, trigger: Trigger | None, rebuild_of: int | None
) -> str:
    """The workflow's one-line summary: `my-vite-app · main · a1b2c3d · rebuild of #14`."""
    parts = [labels.project, labels.branch, labels.commit_hash[:7]] if labels else []
    why = _why(trigger, rebuild_of)
    parts += [why] if why else []
    return one_line(" · ".join(parts) if parts else f"build #{build_id}")


# Markup that works inside a line (the text never starts one: no lists or headings to fear).
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~])")


def _escaped(text: str) -> str:
    """User text shown as itself in Temporal's markdown, not as markup."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def _fenced(text: str) -> str:
    """A code block holding `text` exactly (its fence longer than any backtick run in it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def details(build_id: int, labels: BuildLabels | None, public_url: str) -> str:
    """The workflow's details (markdown): the commit's message and author, and a link to the
    build on the dashboard when KILN_PUBLIC_URL is set."""
    lines = [f"Build #{build_id}"]
    if labels is not None:
        lines[0] += f" of {_escaped(labels.project)} (project {labels.project_id})"
        author = f" by {_escaped(labels.commit_author)}" if labels.commit_author else ""
        lines += ["", f"Commit {labels.commit_hash} on {_escaped(labels.branch)}{author}"]
        message = labels.commit_message.strip()
        if message:
            cut = message.encode()[:MESSAGE_BYTES].decode(errors="ignore")
            lines += ["", _fenced(cut + ("\n…" if cut != message else ""))]
    if public_url:
        lines += [
            "",
            f"[Build #{build_id} on the dashboard]({public_url.rstrip('/')}/builds/{build_id})",
        ]
    return "\n".join(lines)


# --- In the workflow (pure: no I/O, safe in the sandbox) --------------------------------------


def host_of(queue: str, shared_queue: str) -> str:
    """The worker host (KILN_WORKER_ID) that polls a host queue (`<queue>-host-<worker id>`)."""
    return queue.removeprefix(f"{shared_queue}-host-")


def status_update(status: BuildStatus) -> Sequence[SearchAttributeUpdate[Any]]:
    return [STATUS.value_set(status.value)]


def run_summary(commit_hash: str, command: str) -> str:
    """The run step's summary: `clone a1b2c3d, run `npm ci && npm run build`` (200 bytes)."""
    clone = f"clone {commit_hash[:7]}" if commit_hash else "clone"
    return one_line(f"{clone}, run `{command}`" if command else f"{clone} and run the build")


def waiting_details(ahead: int | None) -> str:
    if ahead is None:
        return "waiting for a slot"
    return f"waiting for a slot: {ahead} build{'' if ahead == 1 else 's'} ahead"


def final_details(status: BuildStatus, exit_code: int | None, reason: str | None) -> str:
    if exit_code is not None:
        return f"{status.value} (exit code {exit_code})"
    if reason and status != BuildStatus.CANCELED:
        return f"{status.value}: {reason}"
    return status.value
