"""Benchmarks: measure, report, never assert."""
