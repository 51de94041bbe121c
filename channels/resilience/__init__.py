"""channels/resilience: what wraps a provider so a send survives a bad vendor: fallback chains, circuit breakers,
rate limits and priority slots. May import channels' top-level modules (base, errors, http, phone, segments)
and schemas; never channels.providers or consumers.
"""
