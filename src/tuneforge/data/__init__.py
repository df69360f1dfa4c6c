"""Data stage: load -> validate -> clean -> split -> report (see prepare.py)."""
