"""consumers/pipeline: the stages a record goes through in a worker (decode, ingest, route, policy, schedule,
deliver, fall back, emit statuses, dead-letter) and the outcomes that decide when an offset is committed.
May import consumers.state, consumers.observe, consumers.topics, consumers.clock, channels and schemas; never
consumers.inbound, consumers.cli or consumers.dev. What joins a stage to the others is wired in consumers.hooks.
"""
