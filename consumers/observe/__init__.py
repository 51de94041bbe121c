"""consumers/observe: how a worker is watched: Prometheus metrics, structured logs and the message timeline (an
index of herald.status on disk).
Imports nothing from consumers (but the SQLite helper, consumers/sqlite.py) or channels, so every other package
may import it.
"""
