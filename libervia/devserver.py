"""A local Prosody on 127.0.0.1: its whole configuration and its self-signed certificate.

Used by the sandbox (``scripts/sandbox``, the README's run command) and by the end-to-end tests,
so that both run the same server. Standard library only; imports nothing from Libervia.

Facts (DESIGN.md §8): never Debian's default configuration (it loads mod_limits, which throttles
c2s to 10 kB/s); ``nagle = false`` cuts notification latency from ~42 ms to ~3 ms; STARTTLS
with a certificate made by ``openssl req -x509``, trusted explicitly by clients.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

DOMAIN = "localhost"
MODULES = (
    "roster",
    "saslauth",
    "tls",
    "disco",
    "ping",
    "presence",
    "message",
    "iq",
    "private",
    "vcard",
    "version",
    "uptime",
    "time",
    "pep",
    "carbons",
    "mam",
    "smacks",
    "blocklist",
)
#: the account allowed to create nodes on the pubsub component (Prosody restricts node
#: creation there to admins); its password is the sandbox's / tests' choice
PUBSUB_ADMIN = "pubsub-admin"
#: most items a node may keep (PEP and the component; Prosody's default is 256)
MAX_ITEMS = 100_000


def make_certificate(certs: Path, domain: str = DOMAIN, days: int = 2) -> tuple[Path, Path]:
    """A self-signed certificate for ``domain`` in ``certs``; returns (key, certificate).

    Raises:
        subprocess.CalledProcessError: openssl failed.
    """
    certs.mkdir(parents=True, exist_ok=True)
    key, cert = certs / f"{domain}.key", certs / f"{domain}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
         "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return key, cert


def config_text(
    directory: Path,
    port: int,
    key: Path,
    cert: Path,
    *,
    run_as_root: bool,
    modules: Sequence[str] = MODULES,
    archive_expires_after: str = "never",
    extra: str = "",
    domain: str = DOMAIN,
    proxy65_port: int | None = None,
) -> str:
    """The whole Prosody configuration (Lua) of a server keeping its files in ``directory``.

    Besides the virtual host ``domain``, a pubsub component ``pubsub.<domain>`` where the
    account ``PUBSUB_ADMIN@<domain>`` may create nodes, and with ``proxy65_port`` a SOCKS5
    bytestreams proxy (XEP-0065) ``proxy.<domain>`` on 127.0.0.1 (Prosody only honours
    ``proxy65_ports`` in the global section; measured with Prosody 0.12.3).
    """
    proxy_global = f"proxy65_ports = {{ {proxy65_port} }}" if proxy65_port else ""
    proxy_component = (
        f'''
Component "proxy.{domain}" "proxy65"
    proxy65_address = "127.0.0.1"
    proxy65_acl = {{ "{domain}" }}
'''
        if proxy65_port
        else ""
    )
    enabled = ", ".join(f'"{m}"' for m in modules)
    return f"""-- written by libervia/devserver.py
{"run_as_root = true" if run_as_root else ""}
daemonize = false
pidfile = "{directory}/prosody.pid"
data_path = "{directory}/data"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{directory}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
network_settings = {{ nagle = false }}
modules_enabled = {{ {enabled} }}
modules_disabled = {{ "s2s", "limits" }}
authentication = "internal_hashed"
c2s_require_encryption = true
allow_registration = false
certificates = "{cert.parent}"
ssl = {{ key = "{key}", certificate = "{cert}" }}
archive_expires_after = "{archive_expires_after}"
pep_max_items = {MAX_ITEMS}
{proxy_global}
{extra}
VirtualHost "{domain}"

Component "pubsub.{domain}" "pubsub"
    admins = {{ "{PUBSUB_ADMIN}@{domain}" }}
    pubsub_max_items = {MAX_ITEMS}
{proxy_component}"""
