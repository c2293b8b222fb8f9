"""The HTTP edge: REST API, OAuth callback, health and metrics."""

from .app import create_app

__all__ = ["create_app"]
