"""Outputs derived from the results: CSV tables (and, later, the HTML report)."""
