"""channels/rendering: turning a catalog entry and its parameters into what a provider sends: Jinja templates
(from channels/bundled), attachments and PDFs. May import channels.base, channels.errors and schemas;
never channels.providers, channels.resilience or consumers.
"""
