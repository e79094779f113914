"""The RecLLMSim intent-classifier recipe (see recipe.py)."""
