"""XEP-0115: Entity Capabilities.

Our presences carry a ``<c/>`` element whose verification string (``ver``) is the hash of our
identities and features, and we answer disco#info on ``node#ver``. Received presences with a
``<c/>`` tell us an entity's capabilities by hash: infos already known for that hash (cached in
the database, shared by every profile, kept across restarts) are used without asking; an
unknown hash is asked once (disco#info on ``node#ver``), *verified* (the hash of the answer
must be ``ver``: a lying or broken entity never poisons the cache), then stored.

So reconnecting does not re-query every contact: their hashes are known.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Sequence
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import LiberviaError
from libervia.backend.core.log import get_logger
from libervia.backend.tools import xml

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Entity Capabilities",
    "import_name": "XEP-0115",
    "type": "XEP",
    "protocols": ["XEP-0115"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0115",
    "handler": False,
    "description": "Announce our capabilities and know others' by hash, cached in the database",
}

NS_CAPS = "http://jabber.org/protocol/caps"
NODE = "https://libervia.org/"
HASHES = {"sha-1": hashlib.sha1, "sha-256": hashlib.sha256}
#: private values namespace (general: shared by every profile) of the cache
CACHE_NAMESPACE = "XEP-0115"
#: per-session map of entity (full JID) -> (hash, ver)
ENTITY_KEY = "XEP-0115_entities"


def verification_string(
    identities: list[tuple[str, str, str, str]],
    features: list[str],
    forms: Sequence[tuple[str, Sequence[tuple[str, Sequence[str]]]]] = (),
    algo: str = "sha-1",
) -> str:
    """The ``ver`` of XEP-0115 §5.1.

    Args:
        identities: (category, type, lang, name).
        features: feature namespaces.
        forms: extended infos: (FORM_TYPE, [(var, values)]) without the FORM_TYPE field.
    """
    text = ""
    for category, type_, lang, name in sorted(identities):
        text += f"{category}/{type_}/{lang}/{name}<"
    for feature in sorted(features):
        text += f"{feature}<"
    for form_type, fields in sorted(forms, key=lambda f: f[0]):
        text += f"{form_type}<"
        for var, values in sorted(fields, key=lambda f: f[0]):
            text += f"{var}<" + "".join(f"{v}<" for v in sorted(values))
    digest = HASHES[algo](text.encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def info_verification_string(info: disco.DiscoInfo, algo: str) -> str | None:
    """``ver`` of received infos (None when they cannot be hashed: duplicates, bad forms)."""
    identities = []
    for item in info:
        if isinstance(item, disco.DiscoIdentity):
            identities.append((item.category, item.type, "", item.name or ""))
    if len(set(identities)) != len(identities) or len(set(info.features)) != len(
        [i for i in info if isinstance(i, disco.DiscoFeature)]
    ):
        return None  # XEP-0115 §5.4: duplicates make the result invalid
    forms = []
    for form_type, form in info.extensions.items():
        if not form_type:
            return None
        fields = [
            (f.var, [str(v) for v in f.values]) for f in form.fieldList if f.var != "FORM_TYPE"
        ]
        forms.append((form_type, fields))
    return verification_string(identities, [str(f) for f in info.features], forms, algo)


class XEP_0115:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.disco = host.plugins["XEP-0030"]
        host.trigger.add("presence_send", self._on_presence_send)
        host.trigger.add("presence_received", self._on_presence_received, priority=100)
        #: hash -> infos, for this run (the database keeps them across runs)
        self._known: dict[tuple[str, str], disco.DiscoInfo] = {}
        self._asking: set[tuple[str, str]] = set()
        self._tasks: set[Any] = set()

    def own_ver(self) -> str:
        identities, features = self.disco.own_infos()
        return verification_string(identities, features)

    # --- outgoing -----------------------------------------------------------------------------

    def _on_presence_send(self, client: Any, element: domish.Element) -> bool:
        ver = self.own_ver()
        self.disco.info_nodes.add(f"{NODE}#{ver}")
        c = element.addElement((NS_CAPS, "c"))
        c["hash"] = "sha-1"
        c["node"] = NODE
        c["ver"] = ver
        return True

    # --- incoming -----------------------------------------------------------------------------

    def _on_presence_received(self, client: Any, element: domish.Element) -> bool:
        if element.getAttribute("type") not in (None, "available"):
            return True
        c = next(element.elements(NS_CAPS, "c"), None)
        sender = element.getAttribute("from")
        if c is None or not sender:
            return True
        algo, ver, node = c.getAttribute("hash"), c.getAttribute("ver"), c.getAttribute("node")
        if algo not in HASHES or not ver or not node or len(ver) > 200 or len(node) > 1000:
            return True  # legacy or unusable caps: plain disco when needed
        try:
            entity = JID(sender)
        except Exception:
            return True
        client.extra.setdefault(ENTITY_KEY, {})[entity.full()] = (algo, ver)
        task = background(self._learn(client, entity, algo, ver, node), "XEP-0115 caps")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def wait_idle(self) -> None:
        """Wait until every capability being learnt is known (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _learn(self, client: Any, entity: JID, algo: str, ver: str, node: str) -> None:
        key = (algo, ver)
        info = self._known.get(key) or await self._load(key)
        if info is not None:
            log.debug("%s: capabilities of %s known by hash %s", client.profile, entity.full(), ver)
        else:
            if key in self._asking:
                return
            self._asking.add(key)
            try:
                info = await self._ask(client, entity, algo, ver, node)
            finally:
                self._asking.discard(key)
            if info is None:
                return
        self.disco.cache_infos(client, entity, info)

    async def _load(self, key: tuple[str, str]) -> disco.DiscoInfo | None:
        stored = await self.host.storage.get_privates(CACHE_NAMESPACE, [_cache_key(key)])
        text = stored.get(_cache_key(key))
        if not text:
            return None
        info = disco.DiscoInfo.fromElement(xml.parse(text))
        self._known[key] = info
        return info

    async def _ask(
        self, client: Any, entity: JID, algo: str, ver: str, node: str
    ) -> disco.DiscoInfo | None:
        log.info("%s: asking %s for its capabilities %s", client.profile, entity.full(), ver)
        try:
            info = await self.disco.get_infos(client, entity, f"{node}#{ver}", use_cache=False)
        except LiberviaError as e:
            log.info("%s: capabilities of %s not available: %s", client.profile, entity, e)
            return None
        computed = info_verification_string(info, algo)
        if computed != ver:
            log.warning(
                "%s: %s announced capabilities %s but its infos hash to %s: not cached",
                client.profile,
                entity.full(),
                ver,
                computed,
            )
            return None
        self._known[(algo, ver)] = info
        element = info.toElement()
        await self.host.storage.set_private_value(
            CACHE_NAMESPACE, _cache_key((algo, ver)), xml.serialise(element)
        )
        return info

    def entity_ver(self, client: Any, entity: JID) -> tuple[str, str] | None:
        """The (hash, ver) an entity announced in this session, if any."""
        return client.extra.get(ENTITY_KEY, {}).get(entity.full())


def _cache_key(key: tuple[str, str]) -> str:
    return f"{key[0]} {key[1]}"
