"""Plugin discovery, declaration, dependency order and per-profile lifecycle.

A plugin is a module (or package) ``plugin_*`` of ``libervia.backend.plugins`` with a
``PLUGIN_INFO`` dict (DESIGN.md §7)::

    PLUGIN_INFO = {
        "name": "Publish-Subscribe",
        "import_name": "XEP-0060",
        "type": "XEP",
        "protocols": ["XEP-0060"],
        "dependencies": [],
        "recommendations": ["XEP-0059"],
        "main": "XEP_0060",
        "handler": True,
        "description": "Pubsub client",
    }

Loading follows dependencies (and recommendations, when present). A plugin whose dependency is
missing, disabled or failed is not loaded, with the reason logged; a missing recommendation only
degrades it. A plugin that fails to import or to initialise is logged and skipped: the daemon
starts anyway. ``__init__(host)`` must do no I/O; per-profile work goes in the async hooks
``profile_connecting(client)``, ``profile_connected(client)`` and
``profile_disconnected(client)``; ``get_handler(client)`` returns the plugin's wokkel handler
when ``handler`` is true.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGINS_PACKAGE = "libervia.backend.plugins"
PROFILE_HOOKS = ("profile_connecting", "profile_connected", "profile_disconnected")


@dataclass(frozen=True)
class PluginInfo:
    """The declaration of a plugin (its ``PLUGIN_INFO``)."""

    name: str
    import_name: str
    main: str
    type: str = "misc"
    protocols: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    recommendations: tuple[str, ...] = ()
    handler: bool = False
    description: str = ""

    @classmethod
    def from_dict(cls, data: Any, module: str) -> PluginInfo:
        """Validate a ``PLUGIN_INFO`` dict.

        Raises:
            InvalidInput: missing or mistyped keys, or unknown keys (typos are errors).
        """
        if not isinstance(data, dict):
            raise InvalidInput(f"{module}: PLUGIN_INFO must be a dict")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(f"{module}: unknown PLUGIN_INFO keys {sorted(unknown)}")
        for key in ("name", "import_name", "main"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise InvalidInput(f"{module}: PLUGIN_INFO[{key!r}] must be a non-empty string")
        values = dict(data)
        for key in ("protocols", "dependencies", "recommendations"):
            value = values.get(key, ())
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(f"{module}: PLUGIN_INFO[{key!r}] must be a list of strings")
            values[key] = tuple(value)
        if not isinstance(values.get("handler", False), bool):
            raise InvalidInput(f"{module}: PLUGIN_INFO['handler'] must be a boolean")
        return cls(**values)


@dataclass(frozen=True)
class Candidate:
    info: PluginInfo
    module: ModuleType


def discover(package: str = PLUGINS_PACKAGE) -> tuple[list[Candidate], dict[str, str]]:
    """Import every ``plugin_*`` module of ``package`` and read its declaration.

    Returns:
        the candidates, and the modules that failed (module name -> reason).
    """
    failures: dict[str, str] = {}
    candidates: list[Candidate] = []
    pkg = importlib.import_module(package)
    for module_info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not module_info.name.startswith("plugin_"):
            continue
        module_name = f"{package}.{module_info.name}"
        try:
            module = importlib.import_module(module_name)
            info = PluginInfo.from_dict(getattr(module, "PLUGIN_INFO", None), module_name)
        except Exception as e:
            log.error("plugin module %s cannot be loaded: %s", module_name, e, exc_info=True)
            failures[module_name] = f"cannot be loaded: {e}"
            continue
        candidates.append(Candidate(info, module))
    return candidates, failures


def load_order(
    candidates: Iterable[Candidate], disabled: Iterable[str] = ()
) -> tuple[list[Candidate], dict[str, str]]:
    """Order candidates so that each comes after its dependencies and present recommendations.

    Returns:
        the loadable candidates in order, and the refused ones (import name -> reason).
    """
    refused: dict[str, str] = {}
    by_name: dict[str, Candidate] = {}
    for candidate in candidates:
        name = candidate.info.import_name
        if name in by_name:
            refused[name] = f"declared twice ({candidate.module.__name__})"
            continue
        by_name[name] = candidate
    for name in disabled:
        if name in by_name:
            del by_name[name]
            refused[name] = "disabled in the configuration"
    # drop plugins whose dependencies are missing, until stable (cascades)
    changed = True
    while changed:
        changed = False
        for name, candidate in list(by_name.items()):
            missing = [d for d in candidate.info.dependencies if d not in by_name]
            if missing:
                reasons = [f"{d} ({refused[d]})" if d in refused else d for d in missing]
                refused[name] = f"missing dependency: {', '.join(reasons)}"
                del by_name[name]
                changed = True
    ordered: list[Candidate] = []
    state: dict[str, str] = {}  # "visiting" | "done"

    def visit(name: str, path: list[str]) -> bool:
        if state.get(name) == "done":
            return True
        if state.get(name) == "visiting":
            cycle = " -> ".join([*path[path.index(name) :], name])
            for member in path[path.index(name) :]:
                refused.setdefault(member, f"dependency cycle: {cycle}")
            return False
        state[name] = "visiting"
        info = by_name[name].info
        ok = True
        for dep in info.dependencies:
            ok = visit(dep, [*path, name]) and ok
        for rec in info.recommendations:
            if rec in by_name and rec not in refused:
                visit(rec, [*path, name])
        state[name] = "done"
        if ok and name not in refused:
            ordered.append(by_name[name])
            return True
        refused.setdefault(name, "a dependency could not be loaded")
        return False

    for name in sorted(by_name):
        visit(name, [])
    return ordered, refused


class Plugins:
    """The loaded plugins of a host, by import name, in load order."""

    def __init__(self) -> None:
        self.instances: dict[str, Any] = {}
        self.infos: dict[str, PluginInfo] = {}
        self.refused: dict[str, str] = {}

    def __getitem__(self, import_name: str) -> Any:
        return self.instances[import_name]

    def __contains__(self, import_name: object) -> bool:
        return import_name in self.instances

    def load(
        self, host: Any, candidates: Iterable[Candidate], disabled: Iterable[str] = ()
    ) -> None:
        """Instantiate the plugins in dependency order; failures are logged and skipped."""
        ordered, refused = load_order(candidates, disabled)
        self.refused.update(refused)
        for name, reason in refused.items():
            log.warning("plugin %s not loaded: %s", name, reason)
        for candidate in ordered:
            info = candidate.info
            failed_deps = [d for d in info.dependencies if d not in self.instances]
            if failed_deps:
                self.refused[info.import_name] = f"dependency failed: {', '.join(failed_deps)}"
                log.warning(
                    "plugin %s not loaded: %s", info.import_name, self.refused[info.import_name]
                )
                continue
            try:
                cls = getattr(candidate.module, info.main)
                instance = cls(host)
            except Exception as e:
                self.refused[info.import_name] = f"initialisation failed: {e}"
                log.error("plugin %s failed to initialise", info.import_name, exc_info=True)
                continue
            self.instances[info.import_name] = instance
            self.infos[info.import_name] = info
            log.info("plugin %s loaded", info.import_name)

    async def profile_hook(self, hook: str, client: Any) -> None:
        """Run a per-profile hook on every plugin that has it, in load order.

        A failing hook is logged; the others still run.
        """
        if hook not in PROFILE_HOOKS:
            raise InvalidInput(f"unknown profile hook {hook!r}")
        for name, instance in self.instances.items():
            method = getattr(instance, hook, None)
            if method is None:
                continue
            try:
                result = method(client)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("plugin %s: %s failed", name, hook)

    def handlers(self, client: Any) -> list[Any]:
        """The wokkel handlers of the plugins declaring ``handler`` (for one profile)."""
        handlers = []
        for name, instance in self.instances.items():
            if not self.infos[name].handler:
                continue
            try:
                handler = instance.get_handler(client)
            except Exception:
                log.exception("plugin %s: get_handler failed", name)
                continue
            if handler is not None:
                handlers.append(handler)
        return handlers
