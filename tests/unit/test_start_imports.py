"""What the daemon's start path imports: modules that only some features or engines need stay
out of it (start time and memory, doc/benchmarks.rst "Daemon start and memory")."""

from __future__ import annotations

import json
import subprocess
import sys

# imported by fg before it serves, then every plugin module (as the plugin loader does)
START_PATH = """
import importlib, json, pkgutil, sys
from twisted.internet import asyncioreactor
asyncioreactor.install()
import libervia.backend.daemon, libervia.backend.core.main
import libervia.backend.bridge.dbus, libervia.backend.bridge.adapters
import libervia.backend.plugins as plugins
for info in pkgutil.iter_modules(plugins.__path__):
    importlib.import_module("libervia.backend.plugins." + info.name)
print(json.dumps(sorted(sys.modules)))
"""

#: loaded on first use: Atom entries (lxml), creating or migrating a database (Alembic),
#: PostgreSQL engines, the frontends' bridge client, frontends' WebRTC (aiortc)
NOT_AT_START = (
    "lxml",
    "alembic",
    "sqlalchemy.dialects.postgresql",
    "asyncpg",
    "libervia.frontends.bridge.client",
    "aiortc",
)


def test_start_path_leaves_optional_modules_out() -> None:
    result = subprocess.run(
        [sys.executable, "-c", START_PATH], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "libervia.backend.plugins.plugin_xep_0277" in modules  # the check saw the plugins
    loaded = [m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_AT_START)]
    assert loaded == []


def test_lazy_module_imports_at_first_use() -> None:
    code = (
        "import sys\n"
        "from libervia.backend.tools.lazy import LazyModule\n"
        "m = LazyModule('colorsys')\n"
        "assert 'colorsys' not in sys.modules, 'imported too early'\n"
        "assert m.rgb_to_hsv(1, 0, 0) == (0.0, 1.0, 1)\n"
        "assert 'colorsys' in sys.modules\n"
        "missing = LazyModule('no_such_module_here')\n"
        "try:\n"
        "    missing.anything\n"
        "except ModuleNotFoundError:\n"
        "    print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
