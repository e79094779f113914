"""Source builders, one module per corpus; ``crsdata build SOURCE`` looks ``SOURCE`` up in :data:`BUILDERS`."""

from __future__ import annotations

from builders.inspired import InspiredBuilder
from builders.pearl import PearlBuilder
from builders.recllmsim import RecLLMSimBuilder
from builders.redial import RedialBuilder
from crsdata.build import Builder

# name -> builder class; one line per builder.
BUILDERS: dict[str, type[Builder]] = {
    "redial": RedialBuilder,
    "inspired": InspiredBuilder,
    "recllmsim": RecLLMSimBuilder,
    "pearl": PearlBuilder,
}
