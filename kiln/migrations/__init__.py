"""Alembic migrations for Kiln's schema."""
