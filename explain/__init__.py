"""Explanation engine: class-discriminative channel contributions, exemplars, argument sheets.

Public API (see docs/explain.md):

- `LayerContributions(model, layer=None).explain(images, target=None, contrast="runner_up")`
- `mine_exemplars(model, layer, dataset, top_n=9, out_dir=...)`, `ExemplarIndex`
- `receptive_field(model, layer)`, `ReceptiveField`
- `ConceptNames` (names.json), `reference_names` (NetDissect-style IoU names)
- `run_explain(model_dir, data_dir, out, ...)` / `explain_dataset(model, meta, data_dir, out, ...)`
- `validate_sheet(sheet)`, `sheet_schema()`
"""

from explain.contributions import Explanation, LayerContributions, LayerNotFoundError
from explain.exemplars import ExemplarIndex, mine_exemplars
from explain.names import ConceptNames, reference_names
from explain.pipeline import explain_dataset, run_explain
from explain.receptive_field import ReceptiveField, receptive_field
from explain.sheets import sheet_schema, validate_sheet

__all__ = [
    "ConceptNames", "ExemplarIndex", "Explanation", "LayerContributions", "LayerNotFoundError", "ReceptiveField",
    "explain_dataset", "mine_exemplars", "receptive_field", "reference_names", "run_explain", "sheet_schema",
    "validate_sheet",
]
