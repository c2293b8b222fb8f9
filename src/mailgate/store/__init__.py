"""Persistence: the database (SQLAlchemy 2 async + Alembic) and encryption of secrets at rest."""

from .crypto import SecretBox, load_or_create_key
from .db import Database

__all__ = ["Database", "SecretBox", "load_or_create_key"]
