"""Shared fixtures for tests/training: tiny toy worlds rendered once per session."""

from __future__ import annotations

import pytest
import torch

from training.toyworld import generate_toyworld


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    # tiny models gain nothing from more threads, and on a shared machine extra threads only contend
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """120 train / 30 val / 60 test images of 32 px (default domains, seed 0)."""
    root = tmp_path_factory.mktemp("tiny_world")
    return generate_toyworld(root, n_train=120, n_val=30, n_test=60, image_size=32, seed=0, workers=1, progress=False)


@pytest.fixture(scope="session")
def learn_world(tmp_path_factory):
    """A world big enough to learn something in a few CPU seconds: 900 train images of 32 px."""
    root = tmp_path_factory.mktemp("learn_world")
    return generate_toyworld(root, n_train=900, n_val=120, n_test=180, image_size=32, seed=1, workers=2, progress=False)
