"""``crsdata train user-simulator``: the Interplay user simulator, fine-tuned from SmolLM2-135M (LoRA)."""

from __future__ import annotations

from crsdata.training.interplay import InterplayRecipe


class UserSimulatorRecipe(InterplayRecipe):
    name = "user-simulator"
    role = "user"
    summary = "Interplay user simulator: a persona-driven seeker that accepts what fits (SmolLM2-135M, LoRA)"
    about = (
        "It learns the seeker's turns (Interplay section 3.5) in the finetuned layout: one sequence per dialogue "
        "with the persona (general preferences, watched movies, target attributes, never a target title) and the "
        "whole conversation as context, loss on its own turns only. `accept` is labelled from the questionnaire "
        "(its answer to a suggestion it liked and had not seen), so it learns to end a chat; each sequence ends "
        "at its first accept."
    )
    tags = ("interplay", "user-simulator", "lora")


RECIPE = UserSimulatorRecipe()
