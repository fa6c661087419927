"""Explanation engine: class-discriminative channel contributions, exemplars, argument sheets.

Public API (see docs/explain.md):

- `LayerContributions(model, layer=None).explain(images, target=None, contrast="runner_up")`
- `mine_exemplars(model, layer, dataset, top_n=9, out_dir=...)`, `ExemplarIndex`
- `receptive_field(model, layer)`, `ReceptiveField`
- `ConceptNames` (names.json), `reference_names` (NetDissect-style IoU names)
- `run_explain(model_dir, data_dir, out, ...)` / `explain_dataset(model, meta, data_dir, out, ...)`
- `load_sheets(sheets_dir)`, `read_sheet(path)`, `validate_sheet(sheet)`, `sheet_schema()`, `SheetError`

Names are imported on first use, so `explain.sheet_files` (read by the crowd server and analysis)
loads without torch.
"""

from importlib import import_module

_HOMES = {
    "Explanation": "contributions", "LayerContributions": "contributions", "LayerNotFoundError": "contributions",
    "ExemplarIndex": "exemplars", "mine_exemplars": "exemplars",
    "ConceptNames": "names", "reference_names": "names",
    "explain_dataset": "pipeline", "run_explain": "pipeline",
    "ReceptiveField": "receptive_fields", "receptive_field": "receptive_fields",
    "SheetError": "sheet_files", "load_sheets": "sheet_files", "read_sheet": "sheet_files",
    "sheet_schema": "sheet_files", "validate_sheet": "sheet_files",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'explain' has no attribute {name!r}")
    return getattr(import_module(f"explain.{_HOMES[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
