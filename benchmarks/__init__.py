"""Benchmarks: scripts that print figures (no pass/fail thresholds)."""
