"""Error classes with stable codes.

Every error that can reach a caller (a plugin, the bridge, the command line) carries a
:class:`ErrorCode`. The code is the wire contract: the bridge maps it to a D-Bus error name
(``org.libervia.Libervia.Error.<Code>``), so renaming or moving a class never breaks a frontend.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable error codes (never reuse or rename one)."""

    INTERNAL = "InternalError"
    NOT_FOUND = "NotFound"
    CONFLICT = "Conflict"
    PROFILE_UNKNOWN = "ProfileUnknown"
    PROFILE_EXISTS = "ProfileExists"
    INVALID_INPUT = "InvalidInput"
    CONFIG_ERROR = "ConfigError"
    DATABASE_ERROR = "DatabaseError"
    DATABASE_CORRUPTED = "DatabaseCorrupted"
    DATABASE_TOO_NEW = "DatabaseTooNew"
    MIGRATION_FAILED = "MigrationFailed"
    PASSWORD_ERROR = "PasswordError"
    DECRYPTION_ERROR = "DecryptionError"
    PERMISSION_DENIED = "PermissionDenied"
    NOT_CONNECTED = "NotConnected"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    CONNECTION_FAILED = "ConnectionFailed"
    TLS_FAILED = "TLSFailed"
    TIMEOUT = "Timeout"
    XMPP_ERROR = "XMPPError"
    NOT_READY = "NotReady"
    CANCELLED = "Cancelled"


class LiberviaError(Exception):
    """Base of every error raised on purpose by Libervia."""

    code: ErrorCode = ErrorCode.INTERNAL


class NotFound(LiberviaError):
    code = ErrorCode.NOT_FOUND


class ConflictError(LiberviaError):
    code = ErrorCode.CONFLICT


class ProfileUnknownError(LiberviaError):
    code = ErrorCode.PROFILE_UNKNOWN


class ProfileExistsError(LiberviaError):
    code = ErrorCode.PROFILE_EXISTS


class InvalidInput(LiberviaError):
    code = ErrorCode.INVALID_INPUT


class ConfigError(LiberviaError):
    code = ErrorCode.CONFIG_ERROR


class DatabaseError(LiberviaError):
    code = ErrorCode.DATABASE_ERROR


class DatabaseCorrupted(DatabaseError):
    """The database file exists but cannot be read as a database. It is left untouched."""

    code = ErrorCode.DATABASE_CORRUPTED


class DatabaseTooNew(DatabaseError):
    """The database was migrated by a newer version of Libervia than this one."""

    code = ErrorCode.DATABASE_TOO_NEW


class MigrationFailed(DatabaseError):
    """An upgrade failed; the database was left as it was before the upgrade."""

    code = ErrorCode.MIGRATION_FAILED


class PasswordError(LiberviaError):
    code = ErrorCode.PASSWORD_ERROR


class DecryptionError(LiberviaError):
    code = ErrorCode.DECRYPTION_ERROR


class PermissionDenied(LiberviaError):
    """The caller is not allowed to do this (e.g. a parameter above its security limit)."""

    code = ErrorCode.PERMISSION_DENIED


class NotConnected(LiberviaError):
    """The profile is not connected to its XMPP server."""

    code = ErrorCode.NOT_CONNECTED


class AuthenticationFailed(LiberviaError):
    """The XMPP server refused the credentials (or no common authentication mechanism)."""

    code = ErrorCode.AUTHENTICATION_FAILED


class ConnectionFailed(LiberviaError):
    """The XMPP server could not be reached, or closed the stream during login."""

    code = ErrorCode.CONNECTION_FAILED


class TLSFailed(LiberviaError):
    """TLS could not be established (e.g. the certificate could not be verified)."""

    code = ErrorCode.TLS_FAILED


class OperationTimeout(LiberviaError):
    """An operation took longer than allowed."""

    code = ErrorCode.TIMEOUT


class XMPPError(LiberviaError):
    """The XMPP entity answered with an error (the condition is in the message)."""

    code = ErrorCode.XMPP_ERROR

    def __init__(self, message: str, condition: str = "undefined-condition") -> None:
        super().__init__(message)
        self.condition = condition


class NotReady(LiberviaError):
    """The daemon is still starting (or stopping)."""

    code = ErrorCode.NOT_READY


class ActionCancelled(LiberviaError):
    """A pending action (see ``core/actions.py``) was cancelled before the user answered.

    ``reason`` says why: ``"disconnected"`` (the profile disconnected), or whatever the
    cancelling code gave (e.g. the peer retracted its offer, another device answered).
    """

    code = ErrorCode.CANCELLED

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
