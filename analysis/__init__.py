"""Analysis of crowd judgments: agreement, aggregation, model-vs-human metrics, reports.

Reads judgment frames (`task, worker, label`; the contract is `crowd.judgments`, which imports
nothing else of `crowd`) and sheet JSON; never the server.

    from analysis import read_judgments, krippendorff_alpha, DawidSkene
    frame = read_judgments("judgments.csv")
    krippendorff_alpha(frame[frame.kind == "label"])        # level inferred from the kind
    DawidSkene().fit(frame[frame.item == "label"]).labels_
    worker_flags(worker_quality(frame))                       # who to approve, reject, review, and why
"""

from crowd.judgments import KIND_LEVELS, JudgmentFrameError, read_judgments, validate_judgments
from explain.sheet_files import load_sheets

from .aggregate import (GLAD, DawidSkene, MajorityVote, OneCoinDawidSkene, Wawa, calibration_table,
                        confusion_table, item_uncertainty, spammer_scores, worker_table)
from .agreement import (agreement_by, agreement_table, cohen_kappa, fleiss_kappa, fleiss_kappa_per_category,
                        gwet_ac1, gwet_ac2, icc, infer_level, item_agreement, krippendorff_alpha,
                        percent_agreement, worker_agreement)
from ._bootstrap import Estimate
from .frames import attach_sheet_info, from_matrix, to_long, to_wide
from .model_human import (argument_validity, improvement_clues, localisation_by, localisation_scores,
                          localisation_table, model_answers_from_sheets, model_vs_human, naming_agreement,
                          canonical_name, rank_agreement)
from .quality import worker_flags, worker_quality
from .validation import prepare_judgments

__all__ = [
    "GLAD", "DawidSkene", "MajorityVote", "OneCoinDawidSkene", "Wawa", "item_uncertainty", "spammer_scores",
    "worker_table", "KIND_LEVELS", "agreement_by", "agreement_table", "cohen_kappa", "fleiss_kappa", "gwet_ac1",
    "gwet_ac2", "infer_level", "krippendorff_alpha", "percent_agreement", "Estimate", "JudgmentFrameError",
    "attach_sheet_info", "from_matrix", "load_sheets", "read_judgments", "to_long", "to_wide",
    "validate_judgments", "argument_validity", "improvement_clues", "localisation_by", "localisation_scores",
    "localisation_table", "model_answers_from_sheets", "model_vs_human", "naming_agreement", "canonical_name",
    "rank_agreement", "calibration_table", "confusion_table", "fleiss_kappa_per_category", "icc",
    "item_agreement", "worker_agreement", "worker_flags", "worker_quality", "prepare_judgments",
]
