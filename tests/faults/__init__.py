"""Fault injection: API and worker processes killed with real signals, and Temporal, PostgreSQL
and dockerd restarted under running builds. Meant for a test machine, as root."""
