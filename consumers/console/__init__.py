"""consumers/console: the browser console on the admin port (`/console`), for support staff and template authors:
find a message, a live tail of statuses, template previews, dead letters, health and rates. Server-rendered
pages (Jinja2) with a little plain JavaScript, behind the admin token (a sign-in cookie). May import
consumers.pipeline, consumers.state, consumers.observe, consumers.inbound (the admin server's auth and headers),
consumers.identity, consumers.topics, consumers.clock, channels and schemas; never consumers.cli, consumers.dev,
consumers.hooks or consumers.app (the app hands the console what it needs in a `ConsoleContext`).
"""
