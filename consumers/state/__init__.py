"""consumers/state: Herald's durable state, kept in compacted topics (`kvstore`) and one store per concern (sends,
preferences, conversations, documents), with what keeps it bounded (retention) and what erases a person from it
(erasure). May import consumers.observe, consumers.topics, consumers.identity, consumers.clock, channels and
schemas; never consumers.pipeline, consumers.inbound, consumers.cli or consumers.dev.
"""
