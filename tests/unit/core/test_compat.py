"""core.compat: wokkel's modules load and work on current Twisted once the shim is imported."""

from __future__ import annotations

import importlib
import sys

import pytest

WOKKEL_MODULES = ["client", "disco", "pubsub", "data_form", "muc", "delay", "xmppim", "generic"]


@pytest.mark.parametrize("name", WOKKEL_MODULES)
def test_wokkel_modules_import(name: str) -> None:
    """Every wokkel module the backend uses imports after the shim."""
    import libervia.backend.core.compat  # noqa: F401

    module = importlib.import_module(f"wokkel.{name}")
    assert module.__name__ == f"wokkel.{name}"


def test_install_is_idempotent_and_constants_work() -> None:
    """install() twice changes nothing; the restored constants module is constantly's."""
    from libervia.backend.core import compat

    compat.install()
    first = sys.modules["twisted.python.constants"]
    compat.install()
    assert sys.modules["twisted.python.constants"] is first
    from twisted.python.constants import ValueConstant, Values

    class Colour(Values):
        RED = ValueConstant("red")

    assert Colour.lookupByValue("red") is Colour.RED


def test_data_form_roundtrip() -> None:
    """A wokkel data form (which imports _PY3) builds and parses back."""
    from wokkel import data_form

    from libervia.backend.core import compat  # noqa: F401

    form = data_form.Form("submit", formNamespace="urn:test")
    form.addField(data_form.Field(var="name", value="alice"))
    parsed = data_form.Form.fromElement(form.toElement())
    assert parsed.formNamespace == "urn:test"
    assert parsed.getValues()["name"] == "alice"
