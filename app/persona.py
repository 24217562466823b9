"""Placeholder until its owner lands it."""


def init_app(app):
    """Register nothing yet."""
