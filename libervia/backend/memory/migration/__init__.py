"""Alembic environment of the backend's database (see ``doc/developer.rst``)."""
