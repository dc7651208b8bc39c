"""Python client for the markq HTTP API and the teacher CLI."""
