"""Workflow ids: the id is the build, so starting a build's workflow twice is harmless.

The one derivation of a build's workflow id, in the core so that build records can name their
workflow (`workflowId`) without the core importing `workflows/` (which re-exports it).
"""

from __future__ import annotations

# The key under which a deployment's session factory carries KILN_WORKFLOW_ID_PREFIX in its
# `info` (kiln.db.make_session_factory): build records read it from their build's session.
WORKFLOW_ID_PREFIX = "workflow_id_prefix"


def workflow_id(build_id: int, prefix: str = "") -> str:
    """`build-<id>`, after KILN_WORKFLOW_ID_PREFIX when Kilns share a Temporal namespace."""
    return f"{prefix}build-{build_id}"
