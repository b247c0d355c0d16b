"""GitHub's side of a webhook delivery: payloads from tests/fixtures/github/, the headers GitHub
sends, and its `X-Hub-Signature-256`.

The fixture files are deliveries as GitHub documents them for the `push` and `ping` events, with
`${key}` wherever a test's own value goes: the repository's URLs (and the names derived from
them), the ref, the `before` and `after` commits, and the head commit's message and author.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from string import Template
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "github"
NO_COMMIT = "0" * 40


def html_url_of(repo_url: str) -> str:
    """The repository's browse URL, as GitHub's `html_url`: the clone URL without `.git`."""
    return repo_url.removesuffix(".git")


def payload(
    fixture: str, html_url: str, *, clone_url: str | None = None, **values: str
) -> dict[str, Any]:
    """tests/fixtures/github/<fixture>.json for the repository browsed at `html_url` (cloned
    from `clone_url`, by default `html_url` + `.git`), its `${key}`s filled in from `values`.

    Derived for the file: `site`, `hostname`, `owner` and `name` from `html_url` (a path of one
    segment belongs to the owner `kiln-tests`), `before_short` and `after_short` (12 hex
    digits), and `ref_name` (the ref without `refs/heads/` or `refs/tags/`). A key the file
    uses that is neither given nor derived is an error."""
    scheme, _, rest = html_url.partition("://")
    host, _, path = rest.partition("/")
    owner, _, name = path.partition("/") if "/" in path else ("kiln-tests", "", path)
    derived = {
        "html_url": html_url,
        "clone_url": clone_url or f"{html_url}.git",
        "site": f"{scheme}://{host}",
        "hostname": host.split(":")[0],
        "owner": owner,
        "name": name,
    }
    for sha in ("before", "after"):
        if sha in values:
            derived[f"{sha}_short"] = values[sha][:12]
    if "ref" in values:
        derived["ref_name"] = values["ref"].removeprefix("refs/heads/").removeprefix("refs/tags/")
    template = json.loads((FIXTURES / f"{fixture}.json").read_text())
    filled: dict[str, Any] = _fill(template, derived | values)
    return filled


def _fill(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        return Template(node).substitute(values)
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _fill(item, values) for key, item in node.items()}
    return node


def encode(body: Any) -> bytes:
    return json.dumps(body, indent=2).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(
    event: str, body: bytes, secret: str | None, delivery: str | None = None
) -> dict[str, str]:
    """What GitHub sends with a delivery; no signature header when `secret` is None."""
    sent = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "471138815",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": "702305384",
    }
    if secret is not None:
        sent["X-Hub-Signature-256"] = sign(secret, body)
    return sent
