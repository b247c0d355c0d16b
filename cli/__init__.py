"""The `kiln` command line: the server commands (and, beside them, the client)."""
