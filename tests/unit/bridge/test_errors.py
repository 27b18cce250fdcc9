"""Exceptions -> D-Bus error names and messages; argument checks."""

from __future__ import annotations

import logging

import pytest

from libervia.backend.bridge import errors
from libervia.backend.bridge.api import core_api
from libervia.backend.core import exceptions
from libervia.backend.core.exceptions import ErrorCode, LiberviaError


def _error_classes() -> list[type[LiberviaError]]:
    return [
        c for c in vars(exceptions).values() if isinstance(c, type) and issubclass(c, LiberviaError)
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_libervia_errors_map_to_their_code(cls: type[LiberviaError]) -> None:
    try:
        exc = cls("what went wrong")
    except TypeError:  # errors with extra required arguments
        pytest.skip(f"{cls.__name__} needs more arguments")
    name, message = errors.to_dbus_error(exc)
    assert name == f"org.libervia.Libervia.Error.{cls.code.value}"
    assert message == "what went wrong"


def test_every_code_has_a_valid_error_name() -> None:
    from dbus_fast.validators import assert_interface_name_valid

    for code in ErrorCode:
        assert_interface_name_valid(errors.error_name(code))
    assert errors.error_name(ErrorCode.PROFILE_UNKNOWN) == (
        "org.libervia.Libervia.Error.ProfileUnknown"
    )


def test_empty_message_falls_back_to_the_code() -> None:
    assert errors.to_dbus_error(exceptions.NotFound()) == (
        "org.libervia.Libervia.Error.NotFound",
        "NotFound",
    )


def test_unexpected_exception_is_internal_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> None:
        raise KeyError("secret-value")

    try:
        fail()
    except KeyError as e:
        with caplog.at_level(logging.ERROR, logger="libervia.backend.bridge.errors"):
            name, message = errors.to_dbus_error(e, "profile_create")
    assert name == "org.libervia.Libervia.Error.InternalError"
    assert "KeyError" in message
    assert "secret-value" not in message
    assert "Traceback" not in message and "test_errors.py" not in message
    # ...but the daemon's log has the traceback
    assert "profile_create" in caplog.text
    assert "Traceback" in caplog.text and "secret-value" in caplog.text


def test_invalid_args_and_not_implemented() -> None:
    assert errors.to_dbus_error(errors.InvalidArgs("bad")) == (
        "org.libervia.Libervia.Error.InvalidInput",
        "bad",
    )
    assert errors.to_dbus_error(NotImplementedError())[0] == (
        "org.freedesktop.DBus.Error.NotSupported"
    )


def test_check_call_accepts_the_declared_signature() -> None:
    method = core_api().methods["connect"]
    body = ["alice", "pw", {"a": "b"}]
    assert errors.check_call(method, "ssa{ss}", body) is body


@pytest.mark.parametrize("signature", ["", "ss", "ssa{sv}", "sss", "ssa{ss}s"])
def test_check_call_refuses_other_signatures(signature: str) -> None:
    method = core_api().methods["connect"]
    with pytest.raises(errors.InvalidArgs) as info:
        errors.check_call(method, signature, [])
    text = str(info.value)
    assert "connect expects (profile_key: s, password: s, options: a{ss})" in text
    assert f"[signature {signature!r}]" in text
