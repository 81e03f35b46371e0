"""Benchmarks: each module prints the exact command that produced its numbers."""
