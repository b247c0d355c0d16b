"""`python -m cli` is `kiln`."""

from cli.main import main

main()
