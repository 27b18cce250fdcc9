"""misc/: the systemd user unit and the D-Bus activation file agree with each other and with
the daemon (bus name, command, restart policy). systemd-analyze's opinion of the unit, and the
activation file at work, are in tests/integration/test_daemon.py."""

from __future__ import annotations

import configparser
from pathlib import Path

from libervia.backend.bridge.api import BUS_NAME

MISC = Path(__file__).resolve().parents[2] / "misc"
UNIT = MISC / "libervia-backend.service"
ACTIVATION = MISC / "org.libervia.Libervia.service"


def parse(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser


def test_unit() -> None:
    """A D-Bus service that runs `libervia-backend fg` and is restarted when it fails."""
    unit = parse(UNIT)
    service = unit["Service"]
    assert service["Type"] == "dbus"
    assert service["BusName"] == BUS_NAME
    assert service["ExecStart"] == "/usr/bin/libervia-backend fg"
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_activation_file_points_to_the_unit() -> None:
    """Same bus name and command; the bus hands the start over to the unit under systemd."""
    activation = parse(ACTIVATION)["D-BUS Service"]
    assert activation["Name"] == BUS_NAME
    assert activation["Exec"] == parse(UNIT)["Service"]["ExecStart"]
    assert activation["SystemdService"] == UNIT.name
    assert ACTIVATION.name == f"{BUS_NAME}.service"  # dbus-daemon requires it
