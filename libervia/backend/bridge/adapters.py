"""Bridge adapters of the core methods: D-Bus values in, typed calls, D-Bus values out.

One method per core method of :mod:`libervia.backend.bridge.api`, same name and arguments.
Each is thin: it decodes the strings and serialised dicts of the bridge (JIDs, JSON, numbers),
calls the typed core method, and encodes the result. Bad input raises
:class:`~libervia.backend.core.exceptions.InvalidInput`, which the bridge turns into
``org.libervia.Libervia.Error.InvalidInput``: a caller can never crash the daemon.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.core.messages import signal_args
from libervia.backend.core.xmpp import parse_jid_arg
from libervia.backend.memory.params import ParamType

#: profile key of progress_get_all meaning every profile
ALL_PROFILES = "@ALL@"

#: history_get filters: name -> converter of the string value
HISTORY_FILTERS = {
    "search": str,
    "types": lambda v: [t for t in v.split(",") if t],
    "not_types": lambda v: [t for t in v.split(",") if t],
    "before": float,
    "after": float,
    "before_uid": str,
    "after_uid": str,
    "last_stanza_id": lambda v: v.lower() in ("1", "true", "yes"),
    "order": str,
}


def parse_json_dict(value: str, what: str = "extra") -> dict[str, Any]:
    """A serialised dict (``""`` is an empty dict). Raises InvalidInput otherwise."""
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError as e:
        raise InvalidInput(f"{what} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return data


def history_filters(filters: Mapping[str, str]) -> dict[str, Any]:
    """Decode the ``filters`` of ``history_get``. Raises InvalidInput on unknown or bad ones."""
    decoded: dict[str, Any] = {}
    for key, value in filters.items():
        converter = HISTORY_FILTERS.get(key)
        if converter is None:
            raise InvalidInput(f"unknown history filter {key!r} (known: {sorted(HISTORY_FILTERS)})")
        try:
            decoded[key] = converter(value)
        except ValueError:
            raise InvalidInput(f"bad value {value!r} for history filter {key!r}") from None
    return decoded


def param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class CoreAdapters:
    """The handlers of the core bridge methods (see api.py for their documentation)."""

    def __init__(self, host: Any) -> None:
        self.host = host

    async def _name(self, profile_key: str) -> str:
        return str(await self.host.profiles.get_name(profile_key))

    async def _client(self, profile_key: str) -> Any:
        return self.host.get_client(await self._name(profile_key))

    # --- daemon -------------------------------------------------------------------------------

    async def ready_get(self) -> None:
        await self.host.wait_ready()

    def version_get(self) -> str:
        return str(self.host.version)

    # --- profiles -----------------------------------------------------------------------------

    async def profile_create(self, profile: str, password: str, component: str) -> None:
        await self.host.profiles.create(profile, password, component)

    async def profile_delete_async(self, profile: str) -> None:
        await self.host.profile_delete(profile)

    def profiles_list_get(self, clients: bool, components: bool) -> list[str]:
        return list(self.host.profiles.list(clients, components))

    async def profile_is_session_started(self, profile_key: str) -> bool:
        return bool(self.host.profiles.is_session_started(await self._name(profile_key)))

    async def profile_start_session(self, password: str, profile_key: str) -> bool:
        return bool(await self.host.profiles.start_session(await self._name(profile_key), password))

    async def profile_name_get(self, profile_key: str) -> str:
        return await self._name(profile_key)

    async def profile_set_default(self, profile: str) -> None:
        await self.host.profiles.set_default(profile)

    async def profile_password_set(
        self, old_password: str, new_password: str, profile_key: str
    ) -> None:
        name = await self._name(profile_key)
        await self.host.profiles.change_password(name, old_password, new_password)

    # --- connection ---------------------------------------------------------------------------

    async def connect(self, profile_key: str, password: str, options: dict[str, str]) -> bool:
        return bool(await self.host.connect(profile_key, password, options))

    async def disconnect(self, profile_key: str) -> None:
        await self.host.disconnect(profile_key)

    async def is_connected(self, profile_key: str) -> bool:
        return bool(self.host.is_connected(await self._name(profile_key)))

    # --- parameters ---------------------------------------------------------------------------

    async def _param_target(
        self, name: str, category: str, profile_key: str
    ) -> tuple[Any, str | None, bytes | None]:
        definition = self.host.params.definition(category, name)
        if not definition.individual:
            return definition, None, None
        profile = await self._name(profile_key)
        key = None
        if definition.type is ParamType.PASSWORD:
            key = await self.host.profiles.personal_key(profile)
        return definition, profile, key

    async def param_set(
        self, name: str, value: str, category: str, security_limit: int, profile_key: str
    ) -> None:
        _, profile, key = await self._param_target(name, category, profile_key)
        await self.host.params.set(
            category, name, value, profile, security_limit=security_limit, personal_key=key
        )

    async def param_get_a_async(
        self, name: str, category: str, attribute: str, security_limit: int, profile_key: str
    ) -> str:
        if attribute not in ("", "value"):
            raise InvalidInput(f"unknown parameter attribute {attribute!r} (only 'value')")
        definition, profile, _ = await self._param_target(name, category, profile_key)
        # secrets never cross the bridge: a set password reads as "********"
        value = await self.host.params.get(category, name, profile, security_limit=security_limit)
        return param_text(value)

    # --- messages -----------------------------------------------------------------------------

    async def message_send(
        self,
        to_jid: str,
        message: dict[str, str],
        subject: dict[str, str],
        mess_type: str,
        extra: str,
        profile_key: str,
    ) -> None:
        await self.host.message_send(
            profile_key,
            parse_jid_arg(to_jid, "recipient"),
            message,
            subject,
            mess_type,
            parse_json_dict(extra),
        )

    async def history_get(
        self,
        from_jid: str,
        to_jid: str,
        limit: int,
        between: bool,
        filters: dict[str, str],
        profile: str,
    ) -> list[list[Any]]:
        messages = await self.host.history_get(
            profile,
            parse_jid_arg(from_jid, "from_jid") if from_jid else None,
            parse_jid_arg(to_jid, "to_jid") if to_jid else None,
            None if limit < 0 else limit,
            between,
            history_filters(filters),
        )
        return [list(signal_args(m)) for m in messages]

    # --- roster and presence ------------------------------------------------------------------

    async def contacts_get(self, profile_key: str) -> list[list[Any]]:
        client = await self._client(profile_key)
        return [
            [bare, contact.attributes(), list(contact.groups)]
            for bare, contact in sorted(client.roster.contacts.items())
        ]

    async def contact_add(self, entity_jid: str, profile_key: str) -> None:
        client = await self._client(profile_key)
        jid = parse_jid_arg(entity_jid, "contact")
        await client.roster.update(jid)
        client.presence.answer("subscribe", jid)

    async def contact_update(
        self, entity_jid: str, name: str, groups: list[str], profile_key: str
    ) -> None:
        client = await self._client(profile_key)
        await client.roster.update(parse_jid_arg(entity_jid, "contact"), name, groups)

    async def contact_del(self, entity_jid: str, profile_key: str) -> None:
        client = await self._client(profile_key)
        jid = parse_jid_arg(entity_jid, "contact")
        if client.roster.get(jid) is None:
            raise NotFound(f"{jid.userhost()} is not in the contact list")
        await client.roster.remove(jid)

    async def subscription(self, sub_type: str, entity: str, profile_key: str) -> None:
        client = await self._client(profile_key)
        client.presence.answer(sub_type, parse_jid_arg(entity, "contact"))

    async def presence_set(
        self, to_jid: str, show: str, statuses: dict[str, str], profile_key: str
    ) -> None:
        client = await self._client(profile_key)
        to = parse_jid_arg(to_jid, "recipient") if to_jid else None
        client.presence.send_presence(to, show, statuses)

    async def presence_statuses_get(self, profile_key: str) -> dict[str, Any]:
        client = await self._client(profile_key)
        return {
            bare: {res: [show, prio, statuses] for res, (show, prio, statuses) in resources.items()}
            for bare, resources in client.presence.statuses.items()
        }

    # --- service discovery --------------------------------------------------------------------

    def _disco(self) -> Any:
        if "XEP-0030" not in self.host.plugins:
            raise NotFound("service discovery (plugin XEP-0030) is not loaded")
        return self.host.plugins["XEP-0030"]

    async def disco_infos(
        self, entity_jid: str, node: str, use_cache: bool, profile_key: str
    ) -> list[Any]:
        client = await self._client(profile_key)
        entity = parse_jid_arg(entity_jid, "entity") if entity_jid else None
        info = await self._disco().get_infos(client, entity, node, use_cache)
        identities = sorted(
            [category, type_, name or ""] for (category, type_), name in info.identities.items()
        )
        extensions = {
            form_type or "": [
                [
                    {"var": field.var or "", "label": field.label or "", "type": field.fieldType},
                    [str(v) for v in field.values],
                ]
                for field in form.fieldList
            ]
            for form_type, form in info.extensions.items()
        }
        return [sorted(str(f) for f in info.features), identities, extensions]

    async def disco_items(
        self, entity_jid: str, node: str, use_cache: bool, profile_key: str
    ) -> list[list[str]]:
        client = await self._client(profile_key)
        entity = parse_jid_arg(entity_jid, "entity") if entity_jid else None
        items = await self._disco().get_items(client, entity, node)
        return [[item.entity.full(), item.nodeIdentifier or "", item.name or ""] for item in items]

    # --- actions and progress -----------------------------------------------------------------

    async def action_launch(self, action_id: str, data: str, profile_key: str) -> str:
        answer = parse_json_dict(data, "action data")
        self.host.actions.launch(await self._name(profile_key), action_id, answer)
        return "{}"

    async def progress_get(self, progress_id: str, profile: str) -> dict[str, str]:
        position = self.host.progress.get(await self._name(profile), progress_id)
        return {key: str(value) for key, value in position.items()}

    async def progress_get_all(self, profile: str) -> dict[str, dict[str, dict[str, str]]]:
        name = None if profile == ALL_PROFILES else await self._name(profile)
        return {
            profile_name: {
                progress_id: {key: str(value) for key, value in position.items()}
                for progress_id, position in running.items()
            }
            for profile_name, running in self.host.progress.get_all(name).items()
        }
