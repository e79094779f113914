"""Training recipes, one folder per published model; ``crsdata train RECIPE`` looks RECIPE up in :data:`RECIPES`.

Each entry names the module that defines the recipe's ``RECIPE`` object (a :class:`crsdata.training.Recipe`).
Modules are imported only when their recipe is used or listed in ``--help``, and keep heavy imports (torch, trl)
inside functions.
"""

from __future__ import annotations

import importlib

from crsdata.training.recipe import Recipe

# recipe name -> module holding its RECIPE; one line per recipe.
RECIPES: dict[str, str] = {
    "intent-classifier": "crsdata.models.intent_classifier.recipe",
    "user-simulator": "crsdata.models.user_simulator.recipe",
    "recommender-simulator": "crsdata.models.recommender_simulator.recipe",
    "grsu-scorer": "crsdata.models.grsu_scorer.recipe",
    "user-decision-scorer": "crsdata.models.user_decision_scorer.recipe",
}


def get_recipe(name: str) -> Recipe:
    """The recipe registered as ``name``; KeyError lists the known ones."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r} (known: {', '.join(sorted(RECIPES)) or 'none'})")
    return importlib.import_module(RECIPES[name]).RECIPE
