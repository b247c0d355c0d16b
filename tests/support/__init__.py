"""Test-support helpers: a local git smart-HTTP server and a tiny Docker image."""
