"""Benchmarks that measure the project's goals against real data and the real services."""
