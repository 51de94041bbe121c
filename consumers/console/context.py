"""What the console's pages read: handed over by the app factory, so no page reaches into the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from consumers.identity import KeyRing
from consumers.observe.metrics import Metrics
from consumers.observe.timeline import StatusTimeline
from schemas.settings import Settings


@dataclass
class ConsoleContext:
    """The worker's parts the console shows. `timeline` and `token` are None when HERALD_ADMIN_TOKEN is unset: the
    console then answers 503 everywhere. `extras` holds what a page needs beyond these (the catalog, the renderer),
    under the page's own key."""

    settings: Settings
    metrics: Metrics
    timeline: StatusTimeline | None
    token: SecretStr | None
    keys: KeyRing
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.timeline is not None and self.token is not None
