"""Herald's contracts: pydantic models only. This package imports nothing else of Herald's."""

from schemas.catalog import Catalog, CatalogEntry, CatalogError, Category, Channel, Priority
from schemas.dispatch import Dispatch
from schemas.events import CloudEvent, EventData, Recipient
from schemas.settings import Settings
from schemas.status import FINAL_STATUSES, DeliveryStatus, Status

__all__ = [
    "FINAL_STATUSES",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "Category",
    "Channel",
    "CloudEvent",
    "DeliveryStatus",
    "Dispatch",
    "EventData",
    "Priority",
    "Recipient",
    "Settings",
    "Status",
]
