"""consumers/observe: how a worker is watched: Prometheus metrics and structured logs.
Imports nothing from consumers or channels, so every other package may import it.
"""
