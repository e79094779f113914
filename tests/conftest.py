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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests are skipped with their reason where torch sees no CUDA device, never silently deselected."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    try:
        import torch

        reason = "" if torch.cuda.is_available() else "needs a CUDA device; torch.cuda.is_available() is False here"
    except ImportError:
        reason = "needs torch with CUDA; torch is not installed"
    if reason:
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(pytest.mark.skip(reason=reason))
