"""core.plugins: discovery, PLUGIN_INFO validation, dependency order, failures, hooks."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.plugins import Candidate, PluginInfo, Plugins, discover, load_order
from tests.conftest import aio


def make_package(tmp_path: Path, modules: dict[str, str]) -> str:
    """A throwaway plugins package on sys.path; returns its name."""
    name = f"fake_plugins_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    return name


def plugin_source(
    import_name: str, deps: list[str] = (), recs: list[str] = (), body: str = "pass", **extra: Any
) -> str:
    info = {
        "name": f"Plugin {import_name}",
        "import_name": import_name,
        "main": "Main",
        "dependencies": list(deps),
        "recommendations": list(recs),
        **extra,
    }
    return f"""
PLUGIN_INFO = {info!r}

class Main:
    def __init__(self, host):
        host.order.append({import_name!r})
        {body}

    async def profile_connecting(self, client):
        client.append(("connecting", {import_name!r}))

    def profile_connected(self, client):
        client.append(("connected", {import_name!r}))

    def get_handler(self, client):
        return "handler-" + {import_name!r}
"""


class Host:
    def __init__(self) -> None:
        self.order: list[str] = []


def candidate(
    import_name: str, deps: tuple[str, ...] = (), recs: tuple[str, ...] = ()
) -> Candidate:
    info = PluginInfo(
        name=import_name,
        import_name=import_name,
        main="Main",
        dependencies=deps,
        recommendations=recs,
    )
    return Candidate(info, sys.modules[__name__])


def names(candidates: list[Candidate]) -> list[str]:
    return [c.info.import_name for c in candidates]


def test_dependency_order() -> None:
    """Dependencies and present recommendations come first; missing recommendations are fine."""
    ordered, refused = load_order(
        [
            candidate("C", deps=("B",)),
            candidate("B", deps=("A",), recs=("D", "MISSING")),
            candidate("A"),
            candidate("D"),
        ]
    )
    order = names(ordered)
    assert refused == {}
    assert order.index("A") < order.index("B") < order.index("C")
    assert order.index("D") < order.index("B")


def test_missing_disabled_and_cyclic_dependencies() -> None:
    """Missing or disabled dependencies cascade; cycles are refused with the cycle named."""
    ordered, refused = load_order(
        [
            candidate("A"),
            candidate("B", deps=("MISSING",)),
            candidate("C", deps=("B",)),
            candidate("D", deps=("A",)),
            candidate("E", deps=("D",)),
            candidate("X", deps=("Y",)),
            candidate("Y", deps=("X",)),
        ],
        disabled=["D"],
    )
    assert names(ordered) == ["A"]
    assert refused["B"] == "missing dependency: MISSING"
    assert refused["C"].startswith("missing dependency: B")
    assert refused["D"] == "disabled in the configuration"
    assert "D (disabled in the configuration)" in refused["E"]
    assert "cycle" in refused["X"] and "cycle" in refused["Y"]


@pytest.mark.parametrize(
    "info",
    [
        None,
        {"import_name": "A", "main": "Main"},
        {"name": "A", "import_name": "A", "main": "Main", "dependencies": "B"},
        {"name": "A", "import_name": "A", "main": "Main", "handlr": True},
        {"name": "A", "import_name": "A", "main": "Main", "handler": "yes"},
    ],
)
def test_invalid_plugin_info(info: Any) -> None:
    """Malformed declarations (missing keys, wrong types, typos) are refused."""
    with pytest.raises(InvalidInput):
        PluginInfo.from_dict(info, "plugin_x")


def test_discover_load_and_failures(tmp_path: Path) -> None:
    """Broken modules and failing constructors are skipped with a reason; the rest loads in
    order, and dependents of a failed plugin are not loaded."""
    package = make_package(
        tmp_path,
        {
            "plugin_a": plugin_source("A"),
            "plugin_b": plugin_source("B", deps=["A"], handler=True),
            "plugin_broken_import": "import this_module_does_not_exist\n",
            "plugin_no_info": "X = 1\n",
            "plugin_bad_init": plugin_source("BAD", body="raise RuntimeError('no')"),
            "plugin_after_bad": plugin_source("AFTER", deps=["BAD"]),
            "not_a_plugin": "raise SystemExit('must not be imported')\n",
        },
    )
    candidates, failures = discover(package)
    assert sorted(failures) == [f"{package}.plugin_broken_import", f"{package}.plugin_no_info"]
    host = Host()
    plugins = Plugins()
    plugins.load(host, candidates)
    assert list(plugins.instances) == ["A", "B"]
    assert host.order[:1] == ["A"] and "B" in host.order
    assert plugins.refused["BAD"].startswith("initialisation failed")
    assert plugins.refused["AFTER"] == "dependency failed: BAD"
    assert "A" in plugins and plugins["B"] is plugins.instances["B"]
    assert plugins.handlers(client=[]) == ["handler-B"]


@aio
async def test_profile_hooks(tmp_path: Path) -> None:
    """Hooks run in load order, sync or async; a failing hook does not stop the others."""
    package = make_package(
        tmp_path,
        {
            "plugin_a": plugin_source("A"),
            "plugin_b": plugin_source("B", deps=["A"]),
            "plugin_c": plugin_source("C", deps=["B"]).replace(
                "client.append((\"connecting\", 'C'))", "raise RuntimeError('hook')"
            ),
        },
    )
    candidates, _ = discover(package)
    plugins = Plugins()
    plugins.load(Host(), candidates)
    calls: list[tuple[str, str]] = []
    await plugins.profile_hook("profile_connecting", calls)
    await plugins.profile_hook("profile_connected", calls)
    await plugins.profile_hook("profile_disconnected", calls)  # nobody has it
    assert calls == [
        ("connecting", "A"),
        ("connecting", "B"),
        ("connected", "A"),
        ("connected", "B"),
        ("connected", "C"),
    ]
    with pytest.raises(InvalidInput):
        await plugins.profile_hook("profile_exploded", calls)
