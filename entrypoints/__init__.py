"""Wiring: settings from the environment, the ASGI app and the CLI."""
