"""Operator commands run against the service's database: `python -m interview.admin --help`."""
