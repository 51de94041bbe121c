"""Herald's Faust app: app factory, topics, router, channel agents, web views and the CLI."""
