"""The device registry's command line, `python -m registry` (registry/__main__.py): an operator's
tool over adapters.registry and the broker's files (docs/operations.md)."""
