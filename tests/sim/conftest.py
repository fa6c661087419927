"""A hand-made sheets folder + toy-world-style dataset (16x16 images, two classes) for the
simulated crowd, and a live crowd server on a free port (werkzeug thread, SQLite)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

SIZE = 16
N_SHEETS = 24
PARTS = {"parts": [{"id": 1, "key": "body", "name": "body", "synonyms": ["torso"]},
                   {"id": 6, "key": "horn", "name": "horn", "synonyms": ["spike"]},
                   {"id": 7, "key": "wings", "name": "wings", "synonyms": ["wing"]}],
         "classes": [{"name": "dragon", "discriminative_parts": [6, 7], "parts": [1, 6, 7]},
                     {"name": "rhino", "discriminative_parts": [6], "parts": [1, 6]}],
         "distractor_parts": [1], "backgrounds": ["grass", "sky"],
         "spurious_backgrounds": {"dragon": "grass", "rhino": "sky"}, "image_size": SIZE}


def _mask(kind: int) -> np.ndarray:
    """Horn (6) in the top-left 4x4 block, body (1) in the centre; dragons add wings (7) at top right."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[6:12, 4:12] = 1
    m[0:4, 0:4] = 6
    if kind == 0:
        m[0:4, 12:16] = 7
    return m


def _grid(cell: tuple[int, int]) -> list[list[float]]:
    """A 4x4 channel map with one hot cell (each cell = 4x4 pixels)."""
    g = np.zeros((4, 4))
    g[cell] = 1.0
    return g.tolist()


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """24 sheets: sheet i is a dragon for even i, a rhino for odd i. Argument 1 (channel 3)
    fires on the horn (relevant), argument 2 (channel 5) on the bottom-right background (not)."""
    root = tmp_path_factory.mktemp("simworld")
    data, sheets = root / "data", root / "sheets"
    for d in (data / "masks", data / "images", sheets / "sheets", sheets / "images", sheets / "heatmaps", sheets / "exemplars"):
        d.mkdir(parents=True)
    (data / "parts.json").write_text(json.dumps(PARTS))
    rows = ["sample_id,path,label,domain,split,background,spurious"]
    for c in (3, 5):
        Image.new("RGB", (48, 16), (c * 20, 0, 0)).save(sheets / "exemplars" / f"channel_{c}.png")
    for i in range(N_SHEETS):
        sid = f"test-{i:06d}"
        label = "dragon" if i % 2 == 0 else "rhino"
        bg = "grass" if i < N_SHEETS // 2 else "sky"
        Image.fromarray(_mask(i % 2)).save(data / "masks" / f"{sid}.png")
        img = Image.new("RGB", (SIZE, SIZE), (0, 120, 0))
        img.save(data / "images" / f"{sid}.png")
        img.save(sheets / "images" / f"{sid}.png")
        rows.append(f"{sid},images/{sid}.png,{label},day,test,{bg},0")
        args = []
        for rank, (channel, cell) in enumerate(((3, (0, 0)), (5, (3, 3))), start=1):
            Image.new("RGB", (SIZE, SIZE)).save(sheets / "heatmaps" / f"{sid}_{rank}.png")
            peak = {"x": (cell[1] + 0.5) / 4, "y": (cell[0] + 0.5) / 4}
            args.append({"rank": rank, "channel": channel, "contribution": 2.0 / rank, "share_of_margin": 0.5,
                         "heatmap": f"heatmaps/{sid}_{rank}.png", "heatmap_grid": _grid(cell), "peak": peak,
                         "region": "upper left" if rank == 1 else "lower right", "exemplars": [],
                         "exemplar_strip": f"exemplars/channel_{channel}.png", "name": f"feature {channel}",
                         "name_source": "fallback", "name_iou": None})
        sheet = {"schema_version": "1", "sample_id": sid, "image": f"images/{sid}.png", "label": label, "domain": "day",
                 "split": "test", "model": {"name": "fixture", "arch": "small-cnn", "layer": "features",
                                            "decomposition": "exact"},
                 "prediction": {"class": label, "index": 0 if label == "dragon" else 1, "probability": 0.9},
                 "contrast": {"class": "rhino" if label == "dragon" else "dragon", "index": 1, "probability": 0.1},
                 "margin": 3.0, "correct": True, "arguments": args, "sentence": f"Predicted '{label}'.",
                 "faithfulness": {"top_m": 2, "margin_after_removal": 0.5, "prediction_flips": False,
                                  "deletion_auc": 0.3},
                 "ground_truth": None}
        (sheets / "sheets" / f"{sid}.json").write_text(json.dumps(sheet))
    (data / "samples.csv").write_text("\n".join(rows) + "\n")
    (sheets / "summary.json").write_text(json.dumps({"classes": ["dragon", "rhino"], "dataset": str(data)}))
    return {"data": data, "sheets": sheets}


@pytest.fixture()
def server(tmp_path):
    """The crowd app on a free port (real HTTP), SQLite in tmp_path; yields (url, api_token)."""
    from sim.server import LocalServer

    with LocalServer(tmp_path, api_token="sim-test-token", config={"GOLD_MIN_ANSWERS": 2}) as srv:
        yield srv.url, srv.api_token
