"""JSON Schemas of the contracts, as exported by `herald schema` and committed under `schemas/jsonschema/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from schemas.catalog import Catalog
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent
from schemas.preferences import Preferences
from schemas.status import DeliveryStatus

CONTRACTS: dict[str, type[BaseModel]] = {
    "CloudEvent": CloudEvent,
    "Dispatch": Dispatch,
    "DeliveryStatus": DeliveryStatus,
    "Catalog": Catalog,
    "Preferences": Preferences,
}

SCHEMA_DIR = Path(__file__).resolve().parent / "jsonschema"


def export_schemas() -> dict[str, Any]:
    return {name: model.model_json_schema() for name, model in CONTRACTS.items()}


def dumps(schema: Any) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in export_schemas().items():
        path = folder / f"{name}.json"
        path.write_bytes(dumps(schema))
        paths.append(path)
    return paths
