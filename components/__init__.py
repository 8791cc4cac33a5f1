"""Pulumi components of observability-lab, one concern each."""
