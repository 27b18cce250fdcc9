"""Exceptions -> D-Bus errors.

The error name is the wire contract (``org.libervia.Libervia.Error.<Code>``, ``Code`` being the
:class:`~libervia.backend.core.exceptions.ErrorCode` of a
:class:`~libervia.backend.core.exceptions.LiberviaError`), the message is the exception's text.
Any other exception is a bug: the caller gets ``InternalError`` with the exception's class name
only, and the traceback goes to the daemon's log (a traceback would disclose paths, code and
values to any peer on the bus).
"""

from __future__ import annotations

from dbus_fast.signature import get_signature_tree

from libervia.backend.bridge.api import ERROR_PREFIX, Method
from libervia.backend.core.exceptions import ErrorCode, InvalidInput, LiberviaError
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
NOT_SUPPORTED = "org.freedesktop.DBus.Error.NotSupported"


class InvalidArgs(InvalidInput):
    """The arguments of a call do not match the declared signature: answered, like any bad
    argument, with ``org.libervia.Libervia.Error.InvalidInput`` (both signatures spelled
    out), so that callers see only Libervia errors."""


def error_name(code: ErrorCode | str) -> str:
    """``ErrorCode.PROFILE_UNKNOWN`` -> ``org.libervia.Libervia.Error.ProfileUnknown``."""
    return ERROR_PREFIX + str(code)


def to_dbus_error(exc: BaseException, context: str = "") -> tuple[str, str]:
    """The D-Bus error (name, message) to send for an exception raised while serving a call.

    ``context`` (e.g. the method name) only goes to the log.
    """
    if isinstance(exc, NotImplementedError):
        return NOT_SUPPORTED, str(exc) or "not supported by this daemon"
    if isinstance(exc, LiberviaError):
        return error_name(exc.code), str(exc) or exc.code.value
    log.error("unexpected error in bridge call %s", context or "?", exc_info=exc)
    return (
        error_name(ErrorCode.INTERNAL),
        f"internal error ({type(exc).__name__}); details are in the daemon's log",
    )


def check_call(method: Method, signature: str, body: list[object]) -> list[object]:
    """Check a call's D-Bus signature against the declaration; return the arguments to pass.

    The bus already guarantees that the body matches the message's signature, so comparing
    signatures is enough. Arguments are passed as dbus-fast decoded them (dicts for ``a{..}``,
    lists for arrays, tuples for structs, Python scalars).

    Raises:
        InvalidArgs: with the expected and the received arguments spelled out.
    """
    if signature != method.in_signature:
        expected = ", ".join(f"{a.name}: {a.signature}" for a in method.args) or "none"
        got = ", ".join(t.signature for t in get_signature_tree(signature).types) or "none"
        raise InvalidArgs(
            f"{method.name} expects ({expected}) [signature {method.in_signature!r}], "
            f"got ({got}) [signature {signature!r}]"
        )
    return body
