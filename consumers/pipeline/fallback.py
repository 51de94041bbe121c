"""Outcome-driven fallback: when a channel fails or stays silent, the next channel of the type's order."""

from __future__ import annotations

import hashlib

from schemas.dispatch import Dispatch


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
