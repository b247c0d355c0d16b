"""Temporal activities: the only code that changes a build after it is queued."""
