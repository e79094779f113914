"""``crsdata train recommender-simulator``: the Interplay recommender simulator, from SmolLM2-135M (LoRA)."""

from __future__ import annotations

from crsdata.training.interplay import InterplayRecipe


class RecommenderSimulatorRecipe(InterplayRecipe):
    name = "recommender-simulator"
    role = "recommender"
    summary = "Interplay recommender simulator: elicits, recommends one title at a time (SmolLM2-135M, LoRA)"
    about = (
        "It learns the recommender's turns (Interplay section 3.5) in the finetuned layout: one sequence per "
        "dialogue with the whole conversation as context and no persona or target (reference-free), loss on its "
        "own turns only. Every dialogue with a recommender turn trains, whether or not a persona can be built."
    )
    tags = ("interplay", "recommender-simulator", "lora")


RECIPE = RecommenderSimulatorRecipe()
