"""End-to-end tests: the API and a worker in this process, on every real part, each module once
per database."""
