"""Turn an argument-sheets folder (read by `explain.sheet_files`) or a list of image files into
task payloads for each task kind.

Payload media paths stay relative to the batch's `media_root` (the sheets folder, or the common
folder of the image files); the worker pages serve them through `/media/<batch>/<path>`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from crowd.kinds import DEFAULT_MAX_MARKS, HARD_MAX_MARKS, check_kind
from explain.sheet_files import SheetError, load_sheets, read_summary


@dataclass
class TaskSpec:
    """One task to create: kind, sheet/item id, payload (media paths relative to the root)."""

    kind: str
    sheet: str | None
    payload: dict
    gold: dict | None = None
    extra: dict = field(default_factory=dict)


def _rel(root: Path, ref, where: str) -> str:
    if not isinstance(ref, str) or not ref:
        raise SheetError(f"{where}: expected a relative file path, got {ref!r}")
    target = (root / ref).resolve()
    if root.resolve() not in target.parents:
        raise SheetError(f"{where}: path {ref!r} leaves the sheets folder")
    if not target.is_file():
        raise SheetError(f"{where}: file {ref!r} not found under {root}")
    return target.relative_to(root.resolve()).as_posix()


def sheet_classes(sheets_dir: str | os.PathLike, sheets: dict[str, dict]) -> list[str]:
    """Class names: `summary.json["classes"]` when present, else every class the sheets mention."""
    classes = read_summary(sheets_dir, optional=True).get("classes")
    if isinstance(classes, list) and classes:
        return [c["name"] if isinstance(c, dict) else str(c) for c in classes]
    found = set()
    for s in sheets.values():
        found.add(s["prediction"]["class"])
        if s.get("contrast"):
            found.add(s["contrast"]["class"])
        if s.get("label"):
            found.add(s["label"])
    return sorted(found)


def tasks_from_sheets(sheets_dir: str | os.PathLike, kinds: list[str], *, max_arguments: int = 3,
                      max_marks: int = DEFAULT_MAX_MARKS, classes: list[str] | None = None,
                      limit: int | None = None) -> tuple[list[TaskSpec], list[str]]:
    """Task specs for every sheet (and every explained channel, for `name_feature`).

    Returns `(specs, classes)`. `max_arguments` keeps the top-ranked arguments per sheet;
    `max_marks` caps rationale marks (at most 50).
    """
    root = Path(sheets_dir).resolve()
    folder = load_sheets(root)
    sheets = dict(list(folder.items())[:limit]) if limit else folder
    classes = list(classes) if classes else sheet_classes(root, sheets)
    max_marks = max(1, min(int(max_marks), HARD_MAX_MARKS))
    specs: list[TaskSpec] = []
    channels: dict[int, dict] = {}
    for kind in kinds:
        check_kind(kind)
    for sid, s in sheets.items():
        where = str(folder.files[sid])
        image = _rel(root, s["image"], f"{where} field 'image'")
        target = s.get("label") or s["prediction"]["class"]
        args = sorted(s["arguments"], key=lambda a: a["rank"])[:max_arguments]
        for i, a in enumerate(args):
            strip = a.get("exemplar_strip") or f"exemplars/channel_{int(a['channel'])}.png"
            channels.setdefault(int(a["channel"]), {
                "channel": int(a["channel"]),
                "exemplar_strip": _rel(root, strip, f"{where} arguments[{i}].exemplar_strip"),
                "sheet": sid,
            })
        for kind in kinds:
            if kind == "rate_arguments":
                arguments = [{
                    "rank": int(a["rank"]), "channel": int(a["channel"]),
                    "heatmap": _rel(root, a["heatmap"], f"{where} arguments[{i}].heatmap") if a.get("heatmap") else None,
                    "exemplar_strip": channels[int(a["channel"])]["exemplar_strip"],
                    "name": a.get("name") or f"feature {int(a['channel'])}",
                    "region": a.get("region") or "",
                    "share_of_margin": a.get("share_of_margin"),
                } for i, a in enumerate(args)]
                if not arguments:
                    raise SheetError(f"{where}: no arguments to rate")
                specs.append(TaskSpec(kind, sid, {
                    "sheet": sid, "image": image, "class": s["prediction"]["class"],
                    "probability": s["prediction"].get("probability"),
                    "contrast": (s.get("contrast") or {}).get("class"),
                    "sentence": s.get("sentence") or "", "arguments": arguments,
                }))
            elif kind == "mark_rationale":
                specs.append(TaskSpec(kind, sid, {"sheet": sid, "image": image, "class": target, "max_marks": max_marks}))
            elif kind == "label":
                specs.append(TaskSpec(kind, sid, {"sheet": sid, "image": image, "classes": classes}))
    if "name_feature" in kinds:
        for c in sorted(channels):
            specs.append(TaskSpec("name_feature", channels[c]["sheet"], channels[c]))
    return specs, classes


def tasks_from_images(items: list, classes: list[str]) -> tuple[str, list[TaskSpec]]:
    """`label` task specs for image files. `items` are paths or `{"id", "image"}` objects;
    returns `(media_root, specs)` with paths relative to the images' common folder."""
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise SheetError("classes: need a non-empty list of class names")
    if not items:
        raise SheetError("images: need at least one image")
    norm = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"image": item}
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise SheetError(f"images[{i}]: expected a path or an object with 'image'")
        path = Path(item["image"]).resolve()
        if not path.is_file():
            raise SheetError(f"images[{i}]: file {item['image']!r} not found")
        norm.append((str(item.get("id") or path.stem), path))
    root = Path(os.path.commonpath([str(p.parent) for _, p in norm]))
    specs = [TaskSpec("label", sid, {"sheet": sid, "image": p.relative_to(root).as_posix(), "classes": list(classes)})
             for sid, p in norm]
    return str(root), specs
