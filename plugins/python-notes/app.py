"""A rapport connector in Python: reads notes (a JSON list of
{id, at_unix, title, summary?, email}) from its `items` setting, or over HTTP from its
`notes_url` setting, two per page, and puts each on the timeline of the client its
email points to.

It is written against the contract's own world (`wit/v0.2.0`, world `connector`), which
imports wasi:http by name: the HTTP bindings below come from that world alone.

Build: componentize-py -d ../../wit/v0.2.0 -w connector componentize app -o python_notes.wasm
"""

import json
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, outgoing_handler, streams, wasi_http_types as http
from wit_world.imports import rapport_connector_types as types

PAGE_SIZE = 2
BODY_BYTES_MAX = 1024 * 1024


def setting(config: types.Config, key: str) -> str | None:
    return next((entry.value for entry in config.settings if entry.key == key), None)


def fetch(url: str) -> bytes:
    """GET `url` through wasi:http; the host decides whether it may be reached."""
    parts = urlsplit(url)
    request = http.OutgoingRequest(http.Fields())
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + ("?" + parts.query if parts.query else ""))
    try:
        pending = outgoing_handler.handle(request, None)
    except Err as error:
        raise Err(types.ConnectorError_Config(f"cannot request {url}: {error.value}"))
    # A WASI resource must be dropped before the one it came from (a body before its
    # response, a stream before its body): `with` drops each in that order.
    with pending:
        with pending.subscribe() as ready:
            ready.block()
        answer = pending.get()
    if answer is None or isinstance(answer, Err) or isinstance(answer.value, Err):
        raise Err(types.ConnectorError_Transient(f"no answer from {url}"))
    with answer.value.value as response:
        status = response.status()
        if status == 401 or status == 403:
            raise Err(types.ConnectorError_Auth(f"{url} answered {status}"))
        if status == 429 or status >= 500:
            raise Err(types.ConnectorError_Transient(f"{url} answered {status}"))
        if status != 200:
            raise Err(types.ConnectorError_Fatal(f"{url} answered {status}"))
        with response.consume() as body:
            with body.stream() as stream:
                return read_all(url, stream)


def read_all(url: str, stream: streams.InputStream) -> bytes:
    body = b""
    while True:
        try:
            body += stream.blocking_read(64 * 1024)
        except Err as error:
            if isinstance(error.value, streams.StreamError_Closed):
                return body
            raise Err(types.ConnectorError_Transient(f"reading {url} failed"))
        if len(body) > BODY_BYTES_MAX:
            raise Err(types.ConnectorError_Fatal(f"{url} answered more than 1 MiB"))


def load(config: types.Config) -> list[dict]:
    url = setting(config, "notes_url")
    raw = fetch(url).decode("utf-8", "replace") if url else setting(config, "items")
    if raw is None:
        raise Err(types.ConnectorError_Config("set `items` (a JSON list) or `notes_url`"))
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
            version="0.2.0",
            description="Notes from a JSON setting or URL, written in Python",
            event_kinds=["memo.written"],
            config_keys=[
                types.ConfigKey("items", "The notes, as a JSON list", False, False),
                types.ConfigKey("notes_url", "Or where to GET them", False, False),
            ],
            hosts=["{notes_url}"],
            auth=types.Auth_None_(),
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
