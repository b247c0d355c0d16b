"""Workflow ids: the id is the build, so starting a build's workflow twice is harmless.

The derivation lives in the core (`kiln.workflow_ids`), so build records can name their
workflow too; the workflows use it from here.
"""

from __future__ import annotations

from kiln.workflow_ids import workflow_id

__all__ = ["workflow_id"]
