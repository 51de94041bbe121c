"""Outcome-driven fallback: when a channel fails or stays silent, the next channel of the type's order."""

from __future__ import annotations

import hashlib

from consumers.pipeline.outlets import Outlets
from consumers.pipeline.records import publish_dispatch
from schemas.dispatch import Dispatch
from schemas.status import Status


def next_dispatch(d: Dispatch) -> Dispatch | None:
    """The same message on the next channel left, with ids of its own; None when no channel is left.

    An OTP goes SMS -> voice -> email this way. The ids derive from the failed message's, so a repeated
    fallback (a redelivered receipt) produces the same message and is deduplicated downstream.
    """
    for index, channel in enumerate(d.fallback):
        address = d.to.address_for(channel)
        if address is None:
            continue
        basis = f"{d.message_id}|{channel}"
        return d.model_copy(update={
            "message_id": "msg-" + hashlib.sha256(basis.encode()).hexdigest()[:24],
            "channel": channel,
            "idempotency_key": hashlib.sha256(f"{basis}|{address.lower()}".encode()).hexdigest(),
            "attempt": 1,
            "fallback": d.fallback[index + 1:],
        })
    return None


async def fall_back(outlets: Outlets, d: Dispatch, why: str) -> Dispatch | None:
    """Send the message on the next channel left (SMS -> voice -> email for a code), if any: `accepted` first,
    so it precedes the new message's `sent`."""
    nxt = next_dispatch(d)
    if nxt is None:
        return None
    await outlets.statuses.for_dispatch(nxt, Status.ACCEPTED, attempt=0, detail=f"fallback: {why}")
    await publish_dispatch(outlets.publisher, nxt)
    return nxt
