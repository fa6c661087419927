"""No blind method reads the domain column: a scrambled column gives bit-identical weights."""

import pytest
import torch

from training.datasets import DatasetInfo
from training.methods import available_methods, build_method
from training.trainer import Trainer

BLIND = ["erm", "class-balanced", "focal", "center", "distance-sampling", "center-distance", "jtt"]


def test_every_method_is_registered_and_only_the_oracle_reads_domains():
    names = available_methods()
    assert set(BLIND) | {"groupdro-oracle", "domain-balanced-oracle"} <= set(names)
    readers = [n for n in names if build_method(n).reads_domains]
    assert readers == ["domain-balanced-oracle", "groupdro-oracle"]


def _weights(data, out, config):
    trainer = Trainer(data, out, config, progress=False)
    trainer.fit()
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


# the blind options of the dissertation's method (eval-mode distances, annealing, center warm-up) too
OPTIONS = {m: {} for m in BLIND}
OPTIONS["center-distance+options"] = {"distances": "eval", "anneal_epochs": 2, "center_warmup_epochs": 2}


@pytest.mark.slow
@pytest.mark.parametrize("label", list(OPTIONS))
def test_poisoned_domain_column_gives_identical_weights(label, tiny_world, poisoned_world, tmp_path, monkeypatch,
                                                       tiny_config):
    method, options = label.split("+")[0], OPTIONS[label]
    clean = _weights(tiny_world, tmp_path / "clean", tiny_config(method, **options))
    calls = []
    real = DatasetInfo.domains
    monkeypatch.setattr(DatasetInfo, "domains", lambda self, split: calls.append(split) or real(self, split))
    poisoned = _weights(poisoned_world, tmp_path / "poisoned", tiny_config(method, **options))
    assert calls == []  # the domain accessor was never called while training
    assert clean.keys() == poisoned.keys()
    for k in clean:
        assert torch.equal(clean[k], poisoned[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("method,options", [("groupdro-oracle", {"eta": 1.0}), ("domain-balanced-oracle", {})],
                         ids=["groupdro", "domain-balanced"])
def test_the_oracles_do_see_domains(method, options, tiny_world, poisoned_world, tmp_path, tiny_config):
    """Control: the same check on an oracle must fail, or the test above proves nothing."""
    clean = _weights(tiny_world, tmp_path / "clean", tiny_config(method, **options))
    poisoned = _weights(poisoned_world, tmp_path / "poisoned", tiny_config(method, **options))
    assert any(not torch.equal(clean[k], poisoned[k]) for k in clean)
