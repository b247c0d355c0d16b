"""Workflow ids: the id is the build, so starting a build's workflow twice is harmless."""

from __future__ import annotations


def workflow_id(build_id: int, prefix: str = "") -> str:
    """`build-<id>`, after KILN_WORKFLOW_ID_PREFIX when Kilns share a Temporal namespace."""
    return f"{prefix}build-{build_id}"
