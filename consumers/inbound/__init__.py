"""consumers/inbound: what reaches Herald from outside other than the event topics: the public web app (provider
webhooks, unsubscribe links, documents, the HTTP trigger API), the admin port, hear-back of receipts, and people's
replies and keywords. May import consumers.pipeline (outlets, statuses, the router's checks), consumers.state,
consumers.observe, consumers.identity, consumers.topics, consumers.clock, channels and schemas; never consumers.cli
or consumers.dev.
"""
