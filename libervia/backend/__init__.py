"""Libervia backend: the XMPP client daemon."""

__version__ = "0.10.0.dev0"
