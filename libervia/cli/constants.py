"""Exit codes and other fixed values of ``li`` (documented in doc/cli.rst)."""

from __future__ import annotations

#: success
EXIT_OK = 0
#: any other error detected by ``li`` itself (e.g. the profile is not connected)
EXIT_ERROR = 1
#: bad command line (argparse's code)
EXIT_USAGE = 2
#: the daemon answered an error not listed below
EXIT_BRIDGE_ERROR = 3
#: the daemon is not running (or there is no D-Bus session bus)
EXIT_DAEMON_UNAVAILABLE = 5
#: no answer in time, or the daemon reported a timeout
EXIT_TIMEOUT = 6
#: the profile or the thing asked for does not exist (ProfileUnknown, NotFound)
EXIT_NOT_FOUND = 16
#: the daemon lacks the method or feature needed (UnknownMethod, NotSupported)
EXIT_MISSING_FEATURE = 17
#: it already exists (ProfileExists, Conflict)
EXIT_CONFLICT = 18
#: cancelled by the user (Ctrl-C, confirmation declined) or refused (wrong password, permission
#: denied, authentication failed)
EXIT_CANCELLED = 20
#: a bug in ``li`` (the traceback is shown with ``-v``)
EXIT_INTERNAL_ERROR = 111

#: (code, meaning) for the documentation and ``li --help``
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_ERROR, "other error detected by li (e.g. the profile is not connected)"),
    (EXIT_USAGE, "bad command line"),
    (EXIT_BRIDGE_ERROR, "the daemon answered an error (not one of those below)"),
    (EXIT_DAEMON_UNAVAILABLE, "the daemon is not running, or no D-Bus session bus"),
    (EXIT_TIMEOUT, "no answer in time, or a timeout reported by the daemon"),
    (EXIT_NOT_FOUND, "unknown profile, or the thing asked for does not exist"),
    (EXIT_MISSING_FEATURE, "the daemon lacks the method or feature needed"),
    (EXIT_CONFLICT, "it already exists (e.g. a profile of that name)"),
    (
        EXIT_CANCELLED,
        "cancelled (Ctrl-C, confirmation declined) or refused (wrong password, "
        "permission denied, authentication failed)",
    ),
    (EXIT_INTERNAL_ERROR, "a bug in li (run with -v to see the traceback)"),
)

#: bridge error code (``BridgeError.code``) -> exit code; others: EXIT_BRIDGE_ERROR
ERROR_EXIT_CODES: dict[str, int] = {
    "ProfileUnknown": EXIT_NOT_FOUND,
    "NotFound": EXIT_NOT_FOUND,
    "ProfileExists": EXIT_CONFLICT,
    "Conflict": EXIT_CONFLICT,
    "PasswordError": EXIT_CANCELLED,
    "PermissionDenied": EXIT_CANCELLED,
    "AuthenticationFailed": EXIT_CANCELLED,
    "Cancelled": EXIT_CANCELLED,
    "Timeout": EXIT_TIMEOUT,
    "org.freedesktop.DBus.Error.Timeout": EXIT_TIMEOUT,
    "org.freedesktop.DBus.Error.NoReply": EXIT_TIMEOUT,
    "org.freedesktop.DBus.Error.UnknownMethod": EXIT_MISSING_FEATURE,
    "org.freedesktop.DBus.Error.NotSupported": EXIT_MISSING_FEATURE,
}

DEFAULT_PROFILE = "@DEFAULT@"
OUTPUTS = ("default", "json", "simple")
MESSAGE_TYPES = ("auto", "chat", "normal", "headline", "groupchat")
START_HINT = "start it with: libervia-backend start"
