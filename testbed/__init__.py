"""Kiln's real parts, started locally for the tests and the benchmarks: a git smart-HTTP server,
a busybox image imported into Docker, throwaway PostgreSQL databases, a running Kiln (API and
worker) and a Socket.io client that records what it receives."""
