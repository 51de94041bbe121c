"""`herald asyncapi`: the AsyncAPI 3.0 document of every topic, generated from the code and committed.

The committed schemas/asyncapi.yaml must be what the code generates (`make schema` rewrites it), every topic of
`topic_specs()` must be a channel, and the document must be AsyncAPI 3.0 as far as its structure goes: no validator
library is installed, so `asyncapi_problems` checks the fields the specification requires, the keys it allows,
that every `$ref` resolves, that operations point at their channel's messages and that schemas use only the JSON
Schema draft 7 keywords the AsyncAPI Schema Object is built on. The records Herald writes (dead-letter headers,
replies, binary-mode events) are checked against what the document says of them.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from typer.testing import CliRunner

from channels.webhooks import InboundMessage
from consumers.cli import asyncapi
from consumers.cli import commands as cli
from consumers.cli.asyncapi import ASYNCAPI_FILE, DEAD_LETTER_HEADERS, asyncapi_document, render, reply_models
from consumers.inbound.hearback import REPLY_TYPE, reply_event
from consumers.inbound.keywords import Keyword
from consumers.inbound.replies import OUTCOMES, Interpretation, ReplyKind, reply_cloudevent
from consumers.observe.metrics import Metrics
from consumers.pipeline.deadletter import DeadLetters
from consumers.pipeline.records import Record
from consumers.pipeline.status import Receipt
from consumers.state.conversations import Question
from consumers.topics import topic_specs
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent, EventData
from schemas.preferences import Preferences
from schemas.settings import Settings
from schemas.status import DeliveryStatus
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PREFIX = str(Settings.model_fields["topic_prefix"].default)
PUBLIC_TOPICS = {"events", "events.critical", "status", "replies", "preferences", "deadletter"}

# ---------------------------------------------------------------------------------------------------- the checker

# AsyncAPI 3.0.0: the fields each object may have (https://www.asyncapi.com/docs/reference/specification/v3.0.0).
ROOT_FIELDS = {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components"}
INFO_FIELDS = {"title", "version", "description", "termsOfService", "contact", "license", "tags", "externalDocs"}
SERVER_FIELDS = {"host", "protocol", "protocolVersion", "pathname", "description", "title", "summary", "variables",
                 "security", "tags", "externalDocs", "bindings"}
CHANNEL_FIELDS = {"address", "messages", "title", "summary", "description", "servers", "parameters", "tags",
                  "externalDocs", "bindings"}
OPERATION_FIELDS = {"action", "channel", "title", "summary", "description", "security", "tags", "externalDocs",
                    "bindings", "traits", "messages", "reply"}
MESSAGE_FIELDS = {"headers", "payload", "correlationId", "contentType", "name", "title", "summary", "description",
                  "tags", "externalDocs", "bindings", "examples", "traits"}
COMPONENT_FIELDS = {"schemas", "servers", "channels", "operations", "messages", "securitySchemes", "serverVariables",
                    "parameters", "correlationIds", "replies", "replyAddresses", "externalDocs", "tags",
                    "operationTraits", "messageTraits", "serverBindings", "channelBindings", "operationBindings",
                    "messageBindings"}
TAG_FIELDS = {"name", "description", "externalDocs"}
# Kafka bindings 0.5.0.
KAFKA_CHANNEL_FIELDS = {"topic", "partitions", "replicas", "topicConfiguration", "bindingVersion"}
KAFKA_TOPIC_CONFIGURATION = {"cleanup.policy", "retention.ms", "retention.bytes", "delete.retention.ms",
                             "max.message.bytes", "confluent.key.schema.validation",
                             "confluent.key.subject.name.strategy", "confluent.value.schema.validation",
                             "confluent.value.subject.name.strategy"}
KAFKA_MESSAGE_FIELDS = {"key", "schemaIdLocation", "schemaIdPayloadEncoding", "schemaLookupStrategy",
                        "bindingVersion"}
# The AsyncAPI Schema Object: JSON Schema draft 7 and three fields of its own.
SCHEMA_KEYWORDS = {
    "$ref", "$id", "$comment", "title", "description", "default", "readOnly", "writeOnly", "examples", "multipleOf",
    "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "additionalItems", "items", "maxItems", "minItems", "uniqueItems", "contains", "maxProperties", "minProperties",
    "required", "additionalProperties", "definitions", "properties", "patternProperties", "dependencies",
    "propertyNames", "const", "enum", "type", "format", "contentMediaType", "contentEncoding", "if", "then", "else",
    "allOf", "anyOf", "oneOf", "not", "discriminator", "externalDocs", "deprecated"}
SCHEMA_TYPES = {"null", "boolean", "object", "array", "number", "string", "integer"}
ID_RE = re.compile(r"[A-Za-z0-9_\-]+")  # channel and operation keys
COMPONENT_ID_RE = re.compile(r"[A-Za-z0-9.\-_]+")


def unknown(obj: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}: unknown field {key!r}" for key in obj if key not in allowed and not key.startswith("x-")]


def resolve(document: dict[str, Any], ref: str) -> Any:
    """A local `$ref` (`#/a/b`), or KeyError."""
    if not ref.startswith("#/"):
        raise KeyError(ref)
    node: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            raise KeyError(ref)
        node = node[token]
    return node


def refs(node: Any, where: str = "#") -> list[tuple[str, str]]:
    """Every `$ref` in the document, with where it is."""
    if isinstance(node, dict):
        found = [(where, node["$ref"])] if isinstance(node.get("$ref"), str) else []
        return found + [r for key, value in node.items() for r in refs(value, f"{where}/{key}")]
    if isinstance(node, list):
        return [r for i, value in enumerate(node) for r in refs(value, f"{where}/{i}")]
    return []


def schema_problems(schema: Any, where: str) -> list[str]:
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, dict):
        return [f"{where}: not a schema"]
    problems = [f"{where}: {key!r} is not a draft 7 / AsyncAPI schema keyword" for key in schema
                if key not in SCHEMA_KEYWORDS and not key.startswith("x-")]
    types = schema.get("type", [])
    for t in types if isinstance(types, list) else [types]:
        if t not in SCHEMA_TYPES:
            problems.append(f"{where}: unknown type {t!r}")
    for keyword in ("properties", "patternProperties", "definitions"):
        for name, sub in schema.get(keyword, {}).items():
            problems += schema_problems(sub, f"{where}/{keyword}/{name}")
    for keyword in ("additionalProperties", "additionalItems", "contains", "propertyNames", "not", "if", "then",
                    "else"):
        if keyword in schema:
            problems += schema_problems(schema[keyword], f"{where}/{keyword}")
    items = schema.get("items")
    for i, sub in enumerate(items if isinstance(items, list) else [items] if items is not None else []):
        problems += schema_problems(sub, f"{where}/items/{i}")
    for keyword in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(keyword, [])):
            problems += schema_problems(sub, f"{where}/{keyword}/{i}")
    if "required" in schema and not set(schema["required"]) <= set(schema.get("properties", {})):
        problems.append(f"{where}: requires properties it does not define")
    return problems


def tag_problems(tags: Any, where: str) -> list[str]:
    problems = []
    for i, tag in enumerate(tags):
        if "$ref" in tag:
            continue  # resolved with every other reference
        problems += unknown(tag, TAG_FIELDS, f"{where}/{i}")
        if not isinstance(tag.get("name"), str):
            problems.append(f"{where}/{i}: a tag needs a name")
    return problems


def message_problems(message: dict[str, Any], where: str) -> list[str]:
    problems = unknown(message, MESSAGE_FIELDS, where)
    if "payload" in message:
        problems += schema_problems(message["payload"], f"{where}/payload")
    if "headers" in message:
        headers = message["headers"]
        problems += schema_problems(headers, f"{where}/headers")
        if headers.get("type") != "object":
            problems.append(f"{where}/headers: must be a schema of type object")
    kafka = message.get("bindings", {}).get("kafka")
    if kafka is not None:
        problems += unknown(kafka, KAFKA_MESSAGE_FIELDS, f"{where}/bindings/kafka")
        if "key" in kafka:
            problems += schema_problems(kafka["key"], f"{where}/bindings/kafka/key")
    return problems


def asyncapi_problems(document: dict[str, Any]) -> list[str]:
    """What makes `document` not a structurally valid AsyncAPI 3.0.0 document (empty when it is one)."""
    problems = unknown(document, ROOT_FIELDS, "#")
    if document.get("asyncapi") != "3.0.0":
        problems.append("#/asyncapi: must be '3.0.0'")
    info = document.get("info")
    if not isinstance(info, dict):
        return [*problems, "#/info: required"]
    problems += unknown(info, INFO_FIELDS, "#/info")
    for field in ("title", "version"):
        if not isinstance(info.get(field), str) or not info[field]:
            problems.append(f"#/info/{field}: required")
    for name, server in document.get("servers", {}).items():
        where = f"#/servers/{name}"
        problems += unknown(server, SERVER_FIELDS, where)
        if not server.get("host") or not server.get("protocol"):
            problems.append(f"{where}: host and protocol are required")
        for variable in re.findall(r"\{([^}]+)\}", server.get("host", "")):
            if variable not in server.get("variables", {}):
                problems.append(f"{where}: host variable {variable!r} is not defined")

    channels = document.get("channels", {})
    for channel_id, channel in channels.items():
        where = f"#/channels/{channel_id}"
        if not ID_RE.fullmatch(channel_id):
            problems.append(f"{where}: key must match {ID_RE.pattern}")
        problems += unknown(channel, CHANNEL_FIELDS, where)
        if not isinstance(channel.get("address"), str) or not channel["address"]:
            problems.append(f"{where}/address: a topic name is required here")
        elif "{" in channel["address"] and "parameters" not in channel:
            problems.append(f"{where}/address: a parameter without `parameters`")
        if not channel.get("messages"):
            problems.append(f"{where}/messages: none")
        for message_id, message in channel.get("messages", {}).items():
            if "$ref" not in message:
                problems += message_problems(message, f"{where}/messages/{message_id}")
            elif not message["$ref"].startswith("#/components/messages/"):
                problems.append(f"{where}/messages/{message_id}: must be a message")
        problems += tag_problems(channel.get("tags", []), f"{where}/tags")
        kafka = channel.get("bindings", {}).get("kafka")
        if kafka is not None:
            problems += unknown(kafka, KAFKA_CHANNEL_FIELDS, f"{where}/bindings/kafka")
            configuration = kafka.get("topicConfiguration", {})
            problems += unknown(configuration, KAFKA_TOPIC_CONFIGURATION, f"{where}/bindings/kafka/topicConfiguration")
            if not set(configuration.get("cleanup.policy", [])) <= {"delete", "compact"}:
                problems.append(f"{where}: cleanup.policy is delete and/or compact")

    used_channels = set()
    for operation_id, operation in document.get("operations", {}).items():
        where = f"#/operations/{operation_id}"
        if not ID_RE.fullmatch(operation_id):
            problems.append(f"{where}: key must match {ID_RE.pattern}")
        problems += unknown(operation, OPERATION_FIELDS, where)
        if operation.get("action") not in ("send", "receive"):
            problems.append(f"{where}/action: must be send or receive")
        ref = operation.get("channel", {}).get("$ref", "")
        if not ref.startswith("#/channels/"):
            problems.append(f"{where}/channel: must be a $ref to a channel")
            continue
        used_channels.add(ref.removeprefix("#/channels/"))
        for i, message in enumerate(operation.get("messages", [])):
            # The specification: an operation's messages must be messages of its channel.
            if not message.get("$ref", "").startswith(f"{ref}/messages/"):
                problems.append(f"{where}/messages/{i}: not a message of {ref}")

    components = document.get("components", {})
    problems += unknown(components, COMPONENT_FIELDS, "#/components")
    for kind in COMPONENT_FIELDS & set(components):
        if isinstance(components[kind], dict):
            problems += [f"#/components/{kind}/{key}: key must match {COMPONENT_ID_RE.pattern}"
                         for key in components[kind] if not COMPONENT_ID_RE.fullmatch(key)]
    for name, message in components.get("messages", {}).items():
        problems += message_problems(message, f"#/components/messages/{name}")
    for name, schema in components.get("schemas", {}).items():
        problems += schema_problems(schema, f"#/components/schemas/{name}")
    problems += tag_problems(list(components.get("tags", {}).values()), "#/components/tags")

    for where, ref in refs(document):
        try:
            resolve(document, ref)
        except KeyError:
            problems.append(f"{where}: $ref {ref!r} does not resolve")
    problems += [f"#/channels/{c}: no operation uses it" for c in sorted(set(channels) - used_channels)]
    referenced = {ref for _, ref in refs(document)}
    problems += [f"#/components/messages/{m}: no channel uses it" for m in components.get("messages", {})
                 if f"#/components/messages/{m}" not in referenced]
    return problems


def document() -> dict[str, Any]:
    return asyncapi_document()


def by_address(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {channel["address"]: channel for channel in doc["channels"].values()}


def operations_of(doc: dict[str, Any], address: str) -> set[str]:
    ids = {channel_id for channel_id, c in doc["channels"].items() if c["address"] == address}
    return {op["action"] for op in doc["operations"].values() if op["channel"]["$ref"].rsplit("/", 1)[1] in ids}


# ---------------------------------------------------------------------------------------------------- the file


def test_asyncapi__committed_document_is_what_the_code_generates() -> None:
    assert ASYNCAPI_FILE.read_text(encoding="utf-8") == render(document()), \
        "run `make schema` (herald asyncapi --write) and review the diff of schemas/asyncapi.yaml"


def test_asyncapi__committed_document_parses_to_the_generated_one() -> None:
    # YAML that reads back as the same data: nothing lost to quoting, anchors or line folding.
    assert yaml.safe_load(ASYNCAPI_FILE.read_text(encoding="utf-8")) == document()


def test_asyncapi__cli_prints_the_document_and_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    printed = CliRunner().invoke(cli.app, ["asyncapi"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == render(document())
    target = tmp_path / "asyncapi.yaml"
    monkeypatch.setattr(asyncapi, "ASYNCAPI_FILE", target)
    written = CliRunner().invoke(cli.app, ["asyncapi", "--write"])
    assert written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == printed.stdout


# ---------------------------------------------------------------------------------------------------- structure


def test_asyncapi__document_is_structurally_valid_asyncapi_3() -> None:
    doc = document()
    assert asyncapi_problems(doc) == []
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "Herald" and doc["info"]["version"]


@pytest.mark.parametrize(("case", "break_it"), [
    ("wrong version", lambda d: d.update(asyncapi="2.6.0")),
    ("no info version", lambda d: d["info"].pop("version")),
    ("a channel without address", lambda d: d["channels"]["status"].pop("address")),
    ("an unknown action", lambda d: d["operations"]["sendStatus"].update(action="publish")),
    ("a dangling $ref", lambda d: d["channels"]["status"]["messages"]["DeliveryStatus"].update(
        {"$ref": "#/components/messages/Nope"})),
    ("an operation with another channel's message", lambda d: d["operations"]["sendStatus"]["messages"].append(
        {"$ref": "#/channels/events/messages/CloudEvent"})),
    ("a draft 2020-12 keyword", lambda d: d["components"]["schemas"]["Receipt"].update(prefixItems=[])),
    ("a misspelt field", lambda d: d["channels"]["status"].update(adress="x")),
    ("an unused channel", lambda d: [d["operations"].pop(k) for k in ("sendStatus", "receiveStatus")]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_asyncapi__the_structural_check_finds_what_breaks_a_document(case: str, break_it: Any) -> None:
    doc = copy.deepcopy(document())
    break_it(doc)
    assert asyncapi_problems(doc) != [], case


def test_asyncapi__every_topic_is_a_channel_at_its_address() -> None:
    doc = document()
    addresses = [channel["address"] for channel in doc["channels"].values()]
    assert sorted(addresses) == sorted(PREFIX + spec.short for spec in topic_specs())
    assert len(set(addresses)) == len(addresses)
    assert {"herald.events", "herald.status", "herald.dispatch.email.critical", "herald.state.sends"} <= set(addresses)


def test_asyncapi__internal_topics_are_marked_and_the_contracts_are_public() -> None:
    for address, channel in by_address(document()).items():
        short = address.removeprefix(PREFIX)
        expected = "public" if short in PUBLIC_TOPICS else "internal"
        assert channel["tags"] == [{"$ref": f"#/components/tags/{expected}"}], short


def test_asyncapi__compacted_topics_carry_their_cleanup_policy() -> None:
    channels = by_address(document())
    for spec in topic_specs():
        configuration = channels[PREFIX + spec.short]["bindings"]["kafka"].get("topicConfiguration", {})
        assert ("compact" in configuration.get("cleanup.policy", [])) is spec.compacted, spec.short
        assert ("delete" in configuration.get("cleanup.policy", [])) is spec.timeline_window, spec.short
    assert channels[PREFIX + "content"]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == [
        "compact", "delete"]  # `herald forget` replaces records there


def test_asyncapi__operations_say_what_herald_does_with_each_topic() -> None:
    doc = document()
    assert operations_of(doc, "herald.events") == {"send", "receive"}  # HTTP API and CLI in, router out
    assert operations_of(doc, "herald.status") == {"send", "receive"}  # written, and read by the timeline
    # For upstream, and read by the console's ratings index (`<type>.rated`).
    assert operations_of(doc, "herald.replies") == {"send", "receive"}
    assert operations_of(doc, "herald.deadletter") == {"send", "receive"}  # `herald dlq`


def test_asyncapi__every_message_describes_its_kafka_key() -> None:
    doc = document()
    for name, message in doc["components"]["messages"].items():
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string" and len(key["description"]) > 10, name
    messages = doc["components"]["messages"]
    assert "recipient id" in messages["CloudEvent"]["bindings"]["kafka"]["key"]["description"]
    assert "message id" in messages["DeliveryStatus"]["bindings"]["kafka"]["key"]["description"]


# ---------------------------------------------------------------------------------------------------- the models


@pytest.mark.parametrize("model", [CloudEvent, EventData, Dispatch, DeliveryStatus, Preferences, Receipt],
                         ids=lambda m: m.__name__)
def test_asyncapi__payload_schemas_are_the_models_json_schemas(model: Any) -> None:
    expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = expected.pop("$defs", {})
    expected.pop("$id", None)
    expected.pop("$schema", None)
    schemas = document()["components"]["schemas"]
    assert schemas[model.__name__] == expected
    for name, schema in defs.items():
        assert schemas[name] == schema


def test_asyncapi__each_topic_carries_its_model() -> None:
    channels = by_address(document())
    payloads = {address: {m["$ref"].rsplit("/", 1)[1] for m in c["messages"].values()}
                for address, c in channels.items()}
    assert payloads["herald.events"] == payloads["herald.events.critical"] == {"CloudEvent", "CloudEventBinary"}
    assert payloads["herald.status"] == {"DeliveryStatus"}
    assert payloads["herald.dispatch.sms"] == {"Dispatch"}
    assert payloads["herald.preferences"] == {"Preferences"}
    assert payloads["herald.receipts"] == {"Receipt"}
    assert payloads["herald.replies"] == {"ReplyReceived", "ReplyAnswer", "ReplyRating"}
    assert payloads["herald.deadletter"] == {"DeadLetter"}
    messages = document()["components"]["messages"]
    assert messages["DeliveryStatus"]["payload"] == {"$ref": "#/components/schemas/DeliveryStatus"}
    assert "urn:herald:schema:DeliveryStatus:v1" in messages["DeliveryStatus"]["description"]


async def test_asyncapi__dead_letter_headers_are_the_ones_herald_writes() -> None:
    documented = document()["components"]["messages"]["DeadLetter"]["headers"]
    assert set(documented["properties"]) == set(DEAD_LETTER_HEADERS)
    publisher = RecordingPublisher()
    letters = DeadLetters(publisher, Metrics(), max_record_bytes=65_536)
    for key, value in ((b"user-42", b"{}"), (b"k" * 5000, b"v" * 200_000)):  # whole, and cut to fit
        await letters.send(Record(topic="herald.events", partition=0, offset=7, key=key, value=value),
                           reason="invalid_json", detail="x", stage="router", message_id="msg-1",
                           first_failure=NOW)
    written = [set(sent.headers) for sent in publisher.on("deadletter")]
    assert set().union(*written) == set(documented["properties"]), "every header written is documented, and used"
    for headers in written:
        assert set(documented["required"]) <= headers


def test_asyncapi__reply_records_are_what_the_document_describes() -> None:
    received_model, answer_model = reply_models()
    reply = InboundMessage(channel="sms", sender="+34600111222", text="STOP", recipient_id="user-42")
    received = received_model.model_validate(reply_event(reply, "twilio", NOW, Keyword.STOP,
                                                         sender_hash="sha256:ab"))
    assert received.type == REPLY_TYPE
    question = Question(message_id="msg-1", recipient_id="user-42", event_type="appointment.reminder",
                        channel="sms", asked_at=NOW, tenant="acme", payload={"appointment_id": "APT-5521"})
    for meaning in OUTCOMES:
        answer = answer_model.model_validate(reply_cloudevent(
            Interpretation(ReplyKind.ANSWER, question, meaning, "S"), NOW))
        assert answer.type == f"appointment.reminder.{OUTCOMES[meaning]}"
    received_data, answer_data = (model.model_fields["data"].annotation for model in (received_model, answer_model))
    keyword = get_args(received_data.model_fields["keyword"].annotation)[0]  # Literal[…] | None
    assert set(get_args(keyword)) == {k.value for k in Keyword}
    assert set(get_args(answer_data.model_fields["meaning"].annotation)) == set(OUTCOMES)


def test_asyncapi__binary_mode_headers_are_what_a_cloud_event_is_read_from() -> None:
    headers = document()["components"]["messages"]["CloudEventBinary"]["headers"]
    samples = {"ce_specversion": "1.0", "ce_time": "2026-11-24T10:00:00Z", "ce_sendat": "2026-11-24T11:00:00Z",
               "ce_priority": "high", "content-type": "application/json"}
    values = {name: samples.get(name, "x") for name in headers["properties"]}
    event = CloudEvent.from_record(b'{"to": {"id": "user-42"}}', {k: v.encode() for k, v in values.items()})
    assert (event.id, event.tenant, event.priority) == ("x", "x", "high")
    assert set(headers["required"]) == {"ce_specversion", "ce_id", "ce_source", "ce_type"}
