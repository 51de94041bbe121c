"""The provider simulator: the request side of every vendor Herald talks to, calling Herald's webhooks back signed.

Used on loopback by tests and `herald dev`; `herald sim` serves it alone (`run_sim`).
"""

from consumers.dev.simulator.app import SimServer, create_sim_app, run_sim
from consumers.dev.simulator.behaviour import RateLimit, RecipientRule, SimConfig

__all__ = ["RateLimit", "RecipientRule", "SimConfig", "SimServer", "create_sim_app", "run_sim"]
