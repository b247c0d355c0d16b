"""Kiln's tests: every real part (Temporal, Docker, git over HTTP, Postgres, SQLite) started."""
