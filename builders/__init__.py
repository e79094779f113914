"""Source builders, one module per corpus; ``crsdata build SOURCE`` looks ``SOURCE`` up in :data:`BUILDERS`."""

from __future__ import annotations

from crsdata.build import Builder
from crsdata.builders.inspired import InspiredBuilder
from crsdata.builders.pearl import PearlBuilder
from crsdata.builders.recllmsim import RecLLMSimBuilder
from crsdata.builders.redial import RedialBuilder
from crsdata.builders.redial_eval import RedialEvalBuilder

# name -> builder class; one line per builder.
BUILDERS: dict[str, type[Builder]] = {
    "redial": RedialBuilder,
    "inspired": InspiredBuilder,
    "recllmsim": RecLLMSimBuilder,
    "pearl": PearlBuilder,
    "redial-eval": RedialEvalBuilder,
}
