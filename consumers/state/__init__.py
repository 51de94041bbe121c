"""consumers/state: Herald's durable state, kept in compacted topics (`kvstore`) and one store per concern (sends,
preferences, documents), with what keeps it bounded (retention) and what erases a person from it (erasure).
May import consumers.observe, consumers.topics, channels and schemas, and consumers.identity for keyed
hashes; never consumers.cli or consumers.dev (today `erasure` also uses consumers.pipeline.status and
consumers.inbound.replies' Conversations store).
"""
