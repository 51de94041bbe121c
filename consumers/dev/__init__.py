"""consumers/dev: the local development stack (`herald dev`, `herald demo`, `herald sim`): an embedded broker, a
mail sink, sample events, the provider simulator and the child processes that run them. May import consumers.app,
consumers.topics, consumers.cli's tools (publish, statusview), channels and schemas; nothing in a worker imports it.
"""
