"""Temporal activities: thin adapters from Temporal (heartbeats, cancellation, ApplicationError)
to the core services in `kiln/` they are given."""
