"""No blind method reads the domain column: a scrambled column gives bit-identical weights."""

import pytest
import torch

from training.datasets import DatasetInfo
from training.methods import available_methods, build_method
from training.trainer import Trainer

BLIND = ["erm", "class-balanced", "focal", "center", "distance-sampling", "center-distance", "jtt"]


def test_every_method_is_registered_and_only_the_oracle_reads_domains():
    names = available_methods()
    assert set(BLIND) | {"groupdro-oracle"} <= set(names)
    readers = [n for n in names if build_method(n).reads_domains]
    assert readers == ["groupdro-oracle"]


def _weights(data, out, config):
    trainer = Trainer(data, out, config, progress=False)
    trainer.fit()
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("method", BLIND)
def test_poisoned_domain_column_gives_identical_weights(method, tiny_world, poisoned_world, tmp_path, monkeypatch,
                                                       tiny_config):
    clean = _weights(tiny_world, tmp_path / "clean", tiny_config(method))
    calls = []
    real = DatasetInfo.domains
    monkeypatch.setattr(DatasetInfo, "domains", lambda self, split: calls.append(split) or real(self, split))
    poisoned = _weights(poisoned_world, tmp_path / "poisoned", tiny_config(method))
    assert calls == []  # the domain accessor was never called while training
    assert clean.keys() == poisoned.keys()
    for k in clean:
        assert torch.equal(clean[k], poisoned[k]), k


@pytest.mark.slow
def test_the_oracle_does_see_domains(tiny_world, poisoned_world, tmp_path, tiny_config):
    """Control: the same check on GroupDRO (oracle) must fail, or the test above proves nothing."""
    clean = _weights(tiny_world, tmp_path / "clean", tiny_config("groupdro-oracle", eta=1.0))
    poisoned = _weights(poisoned_world, tmp_path / "poisoned", tiny_config("groupdro-oracle", eta=1.0))
    assert any(not torch.equal(clean[k], poisoned[k]) for k in clean)
