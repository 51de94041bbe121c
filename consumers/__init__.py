"""Herald's worker: the Faust app and everything it runs.

Top level: `app` (the factory, `create_app(settings)`), `hooks` (the closures that join stages, state and inbound
webhooks, so that none of them knows the others), `senders` (providers behind rate limits and breakers),
`topics`, `worker`, `clock`, `sqlite`. Packages by role: `pipeline` (stages), `state` (durable state), `inbound`
(HTTP in), `console` (the browser console), `observe` (metrics, logs), `cli` (`herald`), `dev` (the
development stack, imported by no production module). Dependencies point one way: consumers -> channels -> schemas.
"""
