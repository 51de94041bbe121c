"""consumers/inbound: what reaches Herald from outside other than the event topics: the public web app (provider
webhooks, unsubscribe links, documents), the admin port, hear-back of receipts, and people's replies and keywords.
May import consumers.pipeline (outlets, statuses), consumers.state, consumers.observe, consumers.identity,
consumers.clock, channels and schemas; never consumers.cli or consumers.dev.
"""
