"""Turn an argument-sheets folder (read by `explain.sheet_files`) or a list of image files into
task payloads for each task kind, the batch's practice items and its media manifest.

Payload media paths are keys of the batch's manifest (`crowd.media`): a sheets folder's
relative paths, or opaque keys for image files; the worker pages serve them through signed
`/media/<batch>/<key>?s=...` URLs, and nothing outside the manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from crowd.kinds import DEFAULT_MAX_MARKS, HARD_MAX_MARKS, check_kind
from crowd.media import IMAGE_SUFFIXES, RESEARCHER_PREFIX, payload_media
from explain.sheet_files import SheetError, load_sheets, summary_classes


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
    """The model's classes as explain recorded them (`summary.json["classes"]`); for a folder
    made before explain recorded them, every class the sheets mention (enough for the kinds
    that do not offer classes as choices; a `label` batch needs the full list, see
    `check_label_classes`)."""
    classes = summary_classes(sheets_dir)
    if classes:
        return classes
    return sorted(mentioned_classes(sheets))


def mentioned_classes(sheets: dict[str, dict]) -> set[str]:
    """Every class a set of sheets mentions (predictions, contrasts, true labels)."""
    found = set()
    for s in sheets.values():
        found.add(s["prediction"]["class"])
        if s.get("contrast"):
            found.add(s["contrast"]["class"])
        if s.get("label"):
            found.add(s["label"])
    return found


def check_label_classes(sheets_dir, choices: list[str] | None, sheets: dict[str, dict]) -> list[str]:
    """The choices of a `label` batch: `choices` when given, else the model's class list from the
    summary. Refuses choices that miss one of the model's classes (or a class the sheets
    mention), naming the missing ones, and an old summary without a class list unless the
    choices are given explicitly."""
    where = Path(sheets_dir) / "summary.json"
    model = summary_classes(sheets_dir)
    if not choices:
        if not model:
            raise SheetError(f"{where}: no 'classes' (the model's class list; sheets made by an older explain): "
                             "a label batch needs every class as a choice, so give them explicitly (--classes)")
        return model
    choices = list(dict.fromkeys(choices))
    for name, wanted in (("the model's classes in " + str(where), model or []),
                         ("the classes the sheets mention", sorted(mentioned_classes(sheets)))):
        missing = [c for c in wanted if c not in choices]
        if missing:
            raise SheetError(f"classes: the label choices {choices} miss {len(missing)} of {name}: "
                             f"{', '.join(missing)}; add them (a worker must be able to give every class)")
    return choices


@dataclass
class SheetBatch:
    """What a batch made from a sheets folder holds: task specs, the class list, items of the
    sheets held out of the tasks (`outside`: `{"kind", "sheet", "payload"}`, where practice items
    and the preview's example come from) and the media manifest (`{key: absolute path}`, worker
    files and `researcher/` sheet images)."""

    specs: list[TaskSpec]
    classes: list[str]
    outside: list[dict]
    manifest: dict[str, str]


def _sheet_specs(root: Path, folder, sheets: dict, kinds: list[str], classes: list[str], max_arguments: int,
                 max_marks: int, channels: dict[int, dict]) -> list[TaskSpec]:
    specs: list[TaskSpec] = []
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
    return specs


def sheet_batch(sheets_dir: str | os.PathLike, kinds: list[str], *, max_arguments: int = 3,
                max_marks: int = DEFAULT_MAX_MARKS, classes: list[str] | None = None, limit: int | None = None,
                practice_sheets: list[str] | None = None) -> SheetBatch:
    """Task specs for every sheet (and every explained channel, for `name_feature`), practice
    items and the media manifest.

    `max_arguments` keeps the top-ranked arguments per sheet; `max_marks` caps rationale marks
    (at most 50). Practice items and the preview's example come from outside the batch's tasks:
    the sheets named in `practice_sheets` (which then are not tasks), else the first sheet
    beyond `limit`; with neither there is none. A `label` batch offers the model's full class list
    (see `check_label_classes`).
    """
    root = Path(sheets_dir).resolve()
    folder = load_sheets(root)
    for kind in kinds:
        check_kind(kind)
    practice_ids = list(dict.fromkeys(practice_sheets or []))
    unknown = [p for p in practice_ids if p not in folder]
    if unknown:
        raise SheetError(f"practice_sheets: {', '.join(map(repr, unknown))} not among the sheets of {root}")
    pool = {sid: s for sid, s in folder.items() if sid not in practice_ids}
    sheets = dict(list(pool.items())[:limit]) if limit else pool
    if not sheets:
        raise SheetError(f"{root}: no sheet left for tasks after the practice sheets {practice_ids}")
    if not practice_ids:
        practice_ids = [sid for sid in pool if sid not in sheets][:1]
    if "label" in kinds:
        classes = check_label_classes(root, classes, {**sheets, **{p: folder[p] for p in practice_ids}})
    else:
        classes = list(classes) if classes else sheet_classes(root, sheets)
    max_marks = max(1, min(int(max_marks), HARD_MAX_MARKS))
    channels: dict[int, dict] = {}
    specs = _sheet_specs(root, folder, sheets, kinds, classes, max_arguments, max_marks, channels)
    if "name_feature" in kinds:
        for c in sorted(channels):
            specs.append(TaskSpec("name_feature", channels[c]["sheet"], channels[c]))
    practice = []
    if practice_ids:
        spare: dict[int, dict] = {}
        p_specs = _sheet_specs(root, folder, {p: folder[p] for p in practice_ids}, kinds, classes, max_arguments,
                               max_marks, spare)
        # a practice strip must not be one of the batch's own name_feature strips
        p_specs += [TaskSpec("name_feature", v["sheet"], v) for c, v in sorted(spare.items())
                    if "name_feature" in kinds and c not in channels]
        practice = [{"kind": p.kind, "sheet": p.sheet, "payload": p.payload} for p in p_specs]
    manifest: dict[str, str] = {}
    for payload in [sp.payload for sp in specs] + [p["payload"] for p in practice]:
        for key in payload_media(payload):
            manifest[key] = str(root / key)
    for sid in list(sheets) + practice_ids:
        image = folder.files[sid].with_suffix(".png")  # the rendered sheet: shows model and true label
        if image.is_file():
            manifest[f"{RESEARCHER_PREFIX}sheets/{sid}.png"] = str(image)
    return SheetBatch(specs, classes, practice, manifest)  # practice: the outside items


def tasks_from_sheets(sheets_dir: str | os.PathLike, kinds: list[str], *, max_arguments: int = 3,
                      max_marks: int = DEFAULT_MAX_MARKS, classes: list[str] | None = None,
                      limit: int | None = None) -> tuple[list[TaskSpec], list[str]]:
    """`(specs, classes)` of `sheet_batch`."""
    b = sheet_batch(sheets_dir, kinds, max_arguments=max_arguments, max_marks=max_marks, classes=classes, limit=limit)
    return b.specs, b.classes


def tasks_from_images(items: list, classes: list[str]) -> tuple[dict[str, str], list[TaskSpec]]:
    """`label` task specs for image files. `items` are paths or `{"id", "image"}` objects;
    returns `(manifest, specs)`: the files under opaque keys (`i00001.png`, in item order), so
    neither a folder nor a file name reaches a worker, and no folder is ever served."""
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise SheetError("classes: need a non-empty list of class names")
    if not items:
        raise SheetError("images: need at least one image")
    manifest: dict[str, str] = {}
    specs = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"image": item}
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise SheetError(f"images[{i}]: expected a path or an object with 'image'")
        path = Path(item["image"]).resolve()
        if not path.is_file():
            raise SheetError(f"images[{i}]: file {item['image']!r} not found")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise SheetError(f"images[{i}]: {item['image']!r} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
        key = f"i{i + 1:05d}{path.suffix.lower()}"
        manifest[key] = str(path)
        sid = str(item.get("id") or path.stem)
        specs.append(TaskSpec("label", sid, {"sheet": sid, "image": key, "classes": list(classes)}))
    return manifest, specs
