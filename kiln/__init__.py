"""Kiln's shared core: settings, database, events and the command line."""
