"""A rapport connector in Python: reads notes from its `items` setting (a JSON list of
{id, at_unix, title, summary?, email}), two per page, and puts each on the timeline of
the client its email points to.

Build: componentize-py -d ../../wit/v0.1.0 -w connector componentize app -o python_notes.wasm
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

PAGE_SIZE = 2


def setting(config: types.Config, key: str) -> str | None:
    return next((entry.value for entry in config.settings if entry.key == key), None)


def load(config: types.Config) -> list[dict]:
    raw = setting(config, "items")
    if raw is None:
        raise Err(types.ConnectorError_Config("the `items` setting is required"))
    try:
        items = json.loads(raw)
    except ValueError as error:
        raise Err(types.ConnectorError_Config(f"`items` is not JSON: {error}"))
    if not isinstance(items, list):
        raise Err(types.ConnectorError_Config("`items` must be a JSON list"))
    return items


def to_event(item: dict) -> types.Event:
    return types.Event(
        source_id=item["id"],
        source_version=0,
        kind="memo.written",
        occurred_at=int(item["at_unix"]) * 1_000_000,
        title=item["title"],
        summary=item.get("summary", ""),
        url=None,
        actor=None,
        hints=types.AccountHints(external_ids=[], emails=[item["email"]], domains=[]),
        attributes=[],
    )


class Plugin(exports.Plugin):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="python-notes",
            version="0.1.0",
            description="Notes from a JSON setting, written in Python",
            event_kinds=["memo.written"],
            config_keys=[
                types.ConfigKey("items", "The notes, as a JSON list", True, False)
            ],
            hosts=[],
        )

    def check(self, config: types.Config) -> None:
        load(config)

    def sync(self, config: types.Config, checkpoint: str | None) -> types.Page:
        items = load(config)
        start = int(checkpoint or 0)
        page = items[start : start + PAGE_SIZE]
        host.log(host.LogLevel.INFO, f"read {len(page)} notes from {start}")
        end = start + len(page)
        return types.Page(
            events=[to_event(item) for item in page],
            deleted=[],
            checkpoint=str(end),
            more=end < len(items),
        )

    def handle_webhook(
        self, config: types.Config, request: types.WebhookRequest
    ) -> list[types.Event]:
        raise Err(types.ConnectorError_Config("python-notes takes no webhooks"))
