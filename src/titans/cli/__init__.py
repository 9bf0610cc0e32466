"""Command-line interface: ``titans <command>``."""
