"""Session fixtures shared by all test modules; the builders themselves live in tests/fixtures as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.tiny_models import build_tiny_chat_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny random LlamaForCausalLM and its tokenizer (chat template included); built once."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The converted embedded SmolLM2 folder (converts on first use, ~40 s on 2 cores): for slow tests only."""
    from crsdata.backends.embedded import embedded_model_path

    return embedded_model_path()
