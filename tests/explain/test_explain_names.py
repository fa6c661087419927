"""Concept names: the names file, priorities, NetDissect-style reference names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explain.exemplars import mine_exemplars, stream_top_activations
from explain.names import ConceptNames, part_iou, reference_names

from .conftest import TinyGapNet, hand_set

PARTS = [{"id": 6, "key": "horn", "name": "horn"}, {"id": 7, "key": "wings", "name": "wings"}]


class Squares(torch.utils.data.Dataset):
    """10 images 8x8: a 3x3 'horn' square in input channel 0 and a 2x2 'wings' square in channel 1."""

    def __init__(self):
        self.images, self.masks = [], []
        for i in range(10):
            x, m = torch.zeros(3, 8, 8), np.zeros((8, 8), np.uint8)
            r, c = i % 5, (2 * i) % 5
            x[0, r:r + 3, c:c + 3] = 1.0 + i / 10
            m[r:r + 3, c:c + 3] = 6
            r2, c2 = (r + 4) % 6, (c + 4) % 6
            x[1, r2:r2 + 2, c2:c2 + 2] = 1.0
            m[r2:r2 + 2, c2:c2 + 2] = 7  # drawn later: occludes
            x[0][torch.from_numpy(m == 7)] = 0.0
            self.images.append(x)
            self.masks.append(m)

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return self.images[i], 0, i


def test_reference_names_by_iou(tmp_path):
    net = hand_set(TinyGapNet())
    data = Squares()
    index = mine_exemplars(net, "features", data, top_n=4, out_dir=tmp_path / "ex", device="cpu", progress=False, quantile=0.5)
    names = reference_names(net, "features", data, index, lambda i: data.masks[i], PARTS, progress=False)
    # conv channel c = (c+1) * input channel c % 3 (centre tap): channels 0, 3 see the horn, 1 the wings.
    assert names[0]["name"] == "horn" and names[0]["iou"] == pytest.approx(1.0)
    assert names[3]["name"] == "horn" and names[1]["name"] == "wings" and names[1]["iou"] == pytest.approx(1.0)
    assert 2 not in names  # input channel 2 is always dark: no name


def test_part_iou_hand_checked():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True  # 4 px
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, :2, :1] = 6  # 2 px inside
    labels[1, 3, 3] = 6  # 1 px outside
    assert part_iou(masks, labels, [6, 7]) == {6: pytest.approx(2 / 5), 7: 0.0}


def test_names_file_priorities_and_errors(tmp_path):
    names = ConceptNames(layer="features")
    assert names.lookup(37) == ("feature 37", "fallback", None)
    names.set(37, "striped tail", "reference", confidence=0.3, iou=0.3)
    assert names.lookup(37) == ("striped tail", "reference", 0.3)
    names.set(37, "tiger tail", "crowd", confidence=0.8)
    names.set(37, "stripes", "reference", iou=0.5)  # never replaces a crowd name
    assert names.lookup(37) == ("tiger tail", "crowd", None)
    path = names.save(tmp_path / "names.json")
    again = ConceptNames.load(path)
    assert again.lookup(37)[:2] == ("tiger tail", "crowd") and again.layer == "features"
    assert ConceptNames.load(tmp_path / "missing.json").channels == {}
    (tmp_path / "bad.json").write_text(json.dumps({"channels": {"3": {"name": "x", "source": "guess"}}}))
    with pytest.raises(ValueError, match="'source' must be"):
        ConceptNames.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="source must be"):
        names.set(1, "x", "fallback")


def test_amp_stream_keeps_the_ranking():
    net = hand_set(TinyGapNet())
    loader = torch.utils.data.DataLoader(Squares(), batch_size=4)
    fp32 = stream_top_activations(net, "features", loader, 3, torch.device("cpu"), amp=False, progress=False)
    amp = stream_top_activations(net, "features", loader, 3, torch.device("cpu"), amp=True, progress=False)  # bf16 autocast
    assert torch.equal(fp32["indices"][0], amp["indices"][0])
    torch.testing.assert_close(amp["values"], fp32["values"], rtol=1e-2, atol=1e-2)
