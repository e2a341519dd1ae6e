"""Unit tests of the semantic cache service."""
