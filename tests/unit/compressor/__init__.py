"""Unit tests of the prompt compressor."""
