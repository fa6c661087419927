"""Command modules for the `argus` CLI, one per top-level command."""
