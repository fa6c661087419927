"""The sheets folder on disk: the sheet JSON schema, reading, validating and writing sheet files.

This module is the contract of docs/contracts.md "Sheets folder": `explain` writes sheets
through `write_sheet`, and `crowd` and `analysis` read them through `load_sheets`; every problem
is a `SheetError` naming the file and the field. It imports only the standard library
(jsonschema when validating), so the crowd server and analysis read sheets without torch.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path(__file__).with_name("sheet.schema.json")
_MESSAGE_CHARS = 200  # a failing value (e.g. a whole heatmap grid) is cut to this many characters


class SheetError(ValueError):
    """A sheets folder, sheet file or image list is unusable; the message names the file and field."""


@lru_cache(maxsize=1)
def sheet_schema() -> dict:
    """The JSON Schema of a sheet document (`explain/sheet.schema.json`)."""
    return json.loads(SCHEMA_PATH.read_text())


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(sheet_schema())


def _field(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_sheet(sheet: dict, where: str = "sheet") -> None:
    """Raise `SheetError` ("<where>: <field>: <problem>") when `sheet` breaks the sheet schema."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(sheet))
    if error is None:
        return
    field = _field(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [f"'{field + '.' if field else ''}{f}'" for f in error.validator_value if f not in error.instance]
        problem = f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    else:
        message = error.message if len(error.message) <= _MESSAGE_CHARS else error.message[:_MESSAGE_CHARS] + "..."
        problem = f"field '{field}': {message}" if field else message
    raise SheetError(f"{where}: {problem}") from error


def read_sheet(path: str | os.PathLike) -> dict:
    """One sheet file, parsed and validated against the schema."""
    path = Path(path)
    try:
        sheet = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SheetError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise SheetError(f"{path}: cannot read the sheet ({exc.strerror})") from None
    validate_sheet(sheet, str(path))
    return sheet


def write_sheet(root: str | os.PathLike, sheet: dict) -> Path:
    """Write `SHEETS/sheets/<sample_id>.json` (compact JSON); returns its path."""
    path = Path(root) / "sheets" / f"{sheet['sample_id']}.json"
    path.write_text(json.dumps(sheet, separators=(",", ":")))
    return path


class SheetsFolder(dict):
    """`{sample_id: sheet}` in sample_id order, plus `root` (the SHEETS folder, which every path
    inside a sheet is relative to) and `files` (`{sample_id: path of its JSON file}`)."""

    def __init__(self, root: Path, sheets: dict[str, dict], files: dict[str, Path]):
        super().__init__(sheets)
        self.root = root
        self.files = files


def load_sheets(sheets_dir: str | os.PathLike) -> SheetsFolder:
    """Every sheet of `SHEETS/sheets/*.json`, each validated against the schema.

    Raises `SheetError` when the folder has no `sheets/` subfolder or no sheet, a file is not
    valid JSON or breaks the schema, or two files carry the same sample_id.
    """
    root = Path(sheets_dir)
    folder = root / "sheets"
    if not folder.is_dir():
        raise SheetError(f"{root}: no 'sheets/' folder (expected SHEETS/sheets/<sample_id>.json)")
    sheets: dict[str, dict] = {}
    files: dict[str, Path] = {}
    for path in sorted(folder.glob("*.json")):
        sheet = read_sheet(path)
        sid = str(sheet["sample_id"])
        if sid in files:
            raise SheetError(f"{path}: sample_id {sid!r} is also the sample_id of {files[sid]}")
        sheets[sid], files[sid] = sheet, path
    if not sheets:
        raise SheetError(f"{folder}: no sheet JSON files")
    order = sorted(sheets)
    return SheetsFolder(root, {s: sheets[s] for s in order}, {s: files[s] for s in order})


def read_summary(sheets_dir: str | os.PathLike, optional: bool = False) -> dict:
    """`SHEETS/summary.json` as a dict. `optional`: `{}` when it is missing or unreadable (readers
    that only take hints from it); otherwise a `SheetError` naming the file."""
    path = Path(sheets_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        if optional:
            return {}
        raise SheetError(f"{path}: cannot read the sheets summary ({exc})") from None
    if not isinstance(summary, dict):
        if optional:
            return {}
        raise SheetError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return summary


def summary_classes(sheets_dir: str | os.PathLike) -> list[str] | None:
    """The model's full class list, in the model's order, as explain recorded it in
    `SHEETS/summary.json` (`classes`); None when the summary or the list is missing (sheets made
    by an explain from before the list was recorded). A malformed list is a `SheetError`."""
    summary = read_summary(sheets_dir, optional=True)
    classes = summary.get("classes")
    if classes is None:
        return None
    where = Path(sheets_dir) / "summary.json"
    if not isinstance(classes, list) or not classes:
        raise SheetError(f"{where}: field 'classes': expected a non-empty list of class names, got {classes!r}"[:300])
    names = [c.get("name") if isinstance(c, dict) else c for c in classes]
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise SheetError(f"{where}: field 'classes': {bad[0]!r} is not a class name")
    if len(set(names)) != len(names):
        raise SheetError(f"{where}: field 'classes': a class name appears twice")
    return names


def write_summary(root: str | os.PathLike, summary: dict, *, classes: list[str] | None = None) -> Path:
    """Write `SHEETS/summary.json` (indented JSON); returns its path. `classes`: the model's full
    class list in its order (set as `summary["classes"]`, which `crowd` offers as a label batch's
    choices), not only the classes the explained sheets happen to show."""
    if classes is not None:
        classes = [str(c) for c in classes]
        if not classes or len(set(classes)) != len(classes) or not all(classes):
            raise SheetError(f"classes: expected distinct non-empty class names, got {classes!r}"[:300])
        summary["classes"] = classes
    path = Path(root) / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path
