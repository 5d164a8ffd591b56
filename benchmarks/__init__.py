"""Benchmarks of the running service (`make bench`)."""
