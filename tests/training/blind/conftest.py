"""Shared fixtures of the blind-domain tests: a tiny toy world and a tiny training config."""

import os
import shutil

import pandas as pd
import pytest

TINY_MODEL = {"widths": (8, 16, 16, 16)}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """160 train / 60 val / 60 test images of 32 px, default day/night/fog mix."""
    from training.toyworld import generate_toyworld

    return generate_toyworld(tmp_path_factory.mktemp("blind") / "world", n_train=160, n_val=60, n_test=60,
                             image_size=32, seed=0, workers=1, progress=False)


@pytest.fixture(scope="session")
def poisoned_world(tiny_world, tmp_path_factory):
    """The same images and labels with a scrambled domain column (same paths: `images` linked)."""
    out = tmp_path_factory.mktemp("blind") / "poisoned"
    out.mkdir()
    os.symlink(tiny_world / "images", out / "images")
    shutil.copy(tiny_world / "parts.json", out / "parts.json")
    shutil.copy(tiny_world / "dataset.json", out / "dataset.json")  # same augmentation (flip, shift)
    table = pd.read_csv(tiny_world / "samples.csv", dtype=str, keep_default_na=False)
    # every domain label is replaced: day rows become the rare domains and vice versa
    table["domain"] = [("night", "fog", "dusk")[i % 3] if d == "day" else "day" for i, d in enumerate(table["domain"])]
    table.to_csv(out / "samples.csv", index=False)
    return out


def _tiny_config(method, epochs=2, **options):
    from training.trainer import TrainConfig

    if method == "jtt":
        options.setdefault("first_epochs", 1)
    return TrainConfig(method=method, method_options=options, epochs=epochs, batch_size=32, device="cpu",
                       image_size=32, model_kwargs=dict(TINY_MODEL), lr=0.05)


@pytest.fixture
def tiny_config():
    """`tiny_config(method, epochs=2, **method_options)` -> a TrainConfig small enough for CPU tests."""
    return _tiny_config


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests train tiny CNNs: on a busy 2-core machine one intra-op thread is several times
    faster than two that spin-wait for each other. Restored afterwards for other areas' tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
