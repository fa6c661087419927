"""Write the analysis test fixtures (run once; the output is committed):

tests/analysis/fixtures/
  data/   samples.csv, parts.json, masks/<id>.png   (a 12-image toy dataset, 32x32 px)
  sheets/ sheets/<id>.json                          (argument sheets per docs/contracts.md)
  judgments.csv                                     (a crowd export: all four task kinds)

Design: 8 `day` sheets whose argument heatmaps sit on the object (centre square) and are
judged valid, 4 `night` sheets (all on the `stripes` background) whose heatmaps fire in a
corner, off the object, and are judged invalid. Worker `w5` is a spammer who always answers
`cat`. Run: `.venv/bin/python tests/analysis/make_fixtures.py`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent / "fixtures"
SIZE = 32
CLASSES = ["bird", "cat"]
PARTS = [{"id": 1, "key": "beak", "name": "beak", "synonyms": ["bill"]},
         {"id": 2, "key": "wing", "name": "wing", "synonyms": ["wings", "feather"]},
         {"id": 3, "key": "ear", "name": "pointed ear", "synonyms": ["ear"]}]


def main():
    rng = np.random.default_rng(7)
    (ROOT / "data" / "masks").mkdir(parents=True, exist_ok=True)
    (ROOT / "sheets" / "sheets").mkdir(parents=True, exist_ok=True)
    samples = []
    sheets = {}
    for i in range(12):
        sid = f"s{i:02d}"
        label = CLASSES[i % 2]
        domain = "day" if i < 8 else "night"
        background = ("grass" if i % 3 else "sand") if domain == "day" else "stripes"
        samples.append([sid, f"images/{sid}.png", label, domain, "test", background, int(domain == "night")])
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[8:24, 8:24] = 2 if label == "bird" else 3  # body part
        mask[8:14, 8:14] = 1 if label == "bird" else 3  # head part
        Image.fromarray(mask).save(ROOT / "data" / "masks" / f"{sid}.png")
        args = []
        for rank in (1, 2, 3):
            grid = np.zeros((4, 4))
            if domain == "day":
                grid[1:3, 1:3] = 1.0 / rank          # centre = on the object
            else:
                grid[0, 3] = 1.0 / rank               # top-right corner = background
            grid += rng.uniform(0, 0.02, grid.shape)
            channel = 10 * rank + (i % 2)
            args.append({"rank": rank, "channel": channel, "contribution": round(3.0 / rank, 4),
                         "share_of_margin": round(0.5 / rank, 4), "heatmap": f"heatmaps/{sid}_{rank}.png",
                         "heatmap_grid": np.round(grid, 4).tolist(),
                         "peak": {"x": 0.5 if domain == "day" else 0.85, "y": 0.5 if domain == "day" else 0.15},
                         "region": "centre" if domain == "day" else "upper right", "exemplars": [],
                         "exemplar_strip": None, "name": ["beak", "wing", "pointed ear"][rank - 1],
                         "name_source": "reference", "name_iou": 0.4})
        pred = label if i not in (9, 11) else CLASSES[(i + 1) % 2]
        sheet = {"schema_version": "1", "sample_id": sid, "image": f"images/{sid}.png", "label": label,
                 "domain": domain, "split": "test",
                 "model": {"name": "toy", "arch": "small-cnn", "layer": "features", "decomposition": "exact"},
                 "prediction": {"class": pred, "index": CLASSES.index(pred), "probability": 0.9},
                 "contrast": {"class": CLASSES[1 - CLASSES.index(pred)], "index": 1 - CLASSES.index(pred),
                              "probability": 0.1},
                 "margin": 3.0, "correct": pred == label, "arguments": args,
                 "sentence": f"Predicted '{pred}' (0.90).",
                 "faithfulness": {"top_m": 3, "margin_after_removal": 0.5, "prediction_flips": False,
                                  "deletion_auc": 0.3},
                 "ground_truth": None}
        sheets[sid] = sheet
        (ROOT / "sheets" / "sheets" / f"{sid}.json").write_text(json.dumps(sheet, indent=1))
    with open(ROOT / "data" / "samples.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample_id", "path", "label", "domain", "split", "background", "spurious"])
        w.writerows(samples)
    parts = {"image_size": SIZE, "parts": PARTS,
             "classes": [{"name": "bird", "discriminative_parts": [1, 2], "parts": [1, 2]},
                         {"name": "cat", "discriminative_parts": [3], "parts": [3]}],
             "distractor_parts": [], "backgrounds": ["grass", "sand", "stripes"],
             "spurious_backgrounds": {"cat": "stripes"}}
    (ROOT / "data" / "parts.json").write_text(json.dumps(parts, indent=1))

    cols = ["task", "worker", "label", "item", "kind", "assignment", "batch", "duration_s", "submitted_at", "sheet",
            "channel", "rank", "text", "points", "boxes", "is_gold", "gold_label"]
    rows = []
    task = 0
    assignment = 0

    def add(**kw):
        nonlocal assignment
        assignment += 1
        row = {c: "" for c in cols}
        row.update({"assignment": assignment, "batch": 1, "duration_s": round(float(rng.uniform(4, 30)), 1),
                    "submitted_at": "2026-01-05T10:00:00Z", "is_gold": "false"})
        row.update({k: v for k, v in kw.items()})
        rows.append(row)

    for sid, sheet in sheets.items():
        night = sheet["domain"] == "night"
        # rate_arguments: 3 workers, day mostly yes, night mostly no
        task += 1
        for w in ("w1", "w2", "w3"):
            for a in sheet["arguments"]:
                p_yes = (0.15 if night else 0.9) - 0.1 * (a["rank"] - 1)
                u = rng.random()
                lab = "cant_tell" if u > 0.95 else ("yes" if u < p_yes else "no")
                add(task=task, worker=w, label=lab, item=f"arg:{a['rank']}", kind="rate_arguments", sheet=sid,
                    channel=a["channel"], rank=a["rank"])
            add(task=task, worker=w, label=str(int(rng.integers(1, 3) if night else rng.integers(4, 6))),
                item="match", kind="rate_arguments", sheet=sid, text="")
        # label: 5 workers; w5 is a spammer; two gold tasks
        task += 1
        gold = sid in ("s00", "s01", "s02", "s03")
        for w in ("w1", "w2", "w3", "w4", "w5"):
            if w == "w5":
                lab = "cat"
            else:
                lab = sheet["label"] if rng.random() < 0.85 else CLASSES[1 - CLASSES.index(sheet["label"])]
            add(task=task, worker=w, label=lab, item="label", kind="label", sheet=sid,
                is_gold="true" if gold else "false", gold_label=sheet["label"] if gold else "")
        # mark_rationale: boxes on the object (centre), one worker clicks a point
        task += 1
        for w in ("w1", "w2"):
            add(task=task, worker=w, label="1", item="rationale", kind="mark_rationale", sheet=sid,
                boxes=json.dumps([[0.28, 0.28, 0.72, 0.72]]), points="")
        add(task=task, worker="w3", label="1", item="rationale", kind="mark_rationale", sheet=sid,
            points=json.dumps([[0.5, 0.5]]), boxes="")
    # name_feature: one task per channel of sheet s00 / s01
    names = {10: ["beak", "Bill", "the beak"], 20: ["wings", "wing", "feather"], 30: ["ear", "pointed ears", "horn"],
             11: ["beak", "beak", "nose"], 21: ["wing", "wing", "wing"], 31: ["ears", "ear", "pointed ear"]}
    for channel, ns in names.items():
        task += 1
        sid = "s00" if channel % 2 == 0 else "s01"
        for w, n in zip(("w1", "w2", "w3"), ns):
            add(task=task, worker=w, label=n.lower(), text=n, item="name", kind="name_feature", sheet=sid,
                channel=channel)
            add(task=task, worker=w, label=str(int(rng.integers(3, 6))), item="coherence", kind="name_feature",
                sheet=sid, channel=channel)
    with open(ROOT / "judgments.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} judgments, {len(sheets)} sheets under {ROOT}")


if __name__ == "__main__":
    main()
