"""consumers/pipeline: the stages a record goes through in a worker (decode, ingest, route, policy, schedule,
deliver, fall back, emit statuses, dead-letter) and the outcomes that decide when an offset is committed.
May import consumers.state, consumers.observe, consumers.topics, channels and schemas; never consumers.cli or
consumers.dev (today `hooks` also reads consumers.inbound.replies and .unsubscribe to wire replies and unsubscribes).
"""
