"""The OpenAI-compatible server markq ships for tests, benchmarks and the keyless demo."""
