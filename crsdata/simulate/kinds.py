"""Simulation kinds; ``crsdata simulate KIND`` looks ``KIND`` up in :data:`SIMULATIONS`.

A new kind is one module with a :class:`~crsdata.simulate.base.Simulation` subclass (its declarations, options,
step contract and output hooks) and one line here; the command never names a kind.
"""

from __future__ import annotations

from crsdata.simulate.base import Simulation
from crsdata.simulate.interplay import InterplaySimulation
from crsdata.simulate.recllmsim import RecLLMSimSimulation

# name -> simulation class; one line per kind.
SIMULATIONS: dict[str, type[Simulation]] = {
    "interplay": InterplaySimulation,
    "recllmsim": RecLLMSimSimulation,
}
