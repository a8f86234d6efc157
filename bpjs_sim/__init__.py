"""BPJS Ketenagakerjaan simulator: ``create_app`` builds it, ``SimConfig`` configures it."""

from __future__ import annotations

from bpjs_sim.sim_config import FaultKnobs, SimConfig
from bpjs_sim.simulator import create_app

__all__ = ["FaultKnobs", "SimConfig", "create_app"]
