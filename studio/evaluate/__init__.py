"""Evaluation: prompt x seed x variant grids scored by what fits (likeness, CLIP score, the pocket checker), charted,
kept on disk."""

from studio.evaluate.report import EvaluationReport, list_evaluations, load_evaluation
from studio.evaluate.request import (STUDY_PROMPTS, STUDY_SEEDS, EvaluationRequest, Variant, parse_variant,
                                     study_seeds)
from studio.evaluate.run import EvaluationCancelled, evaluate
from studio.evaluate.scoring import GroupSummary, ImageScore, format_table

__all__ = ["STUDY_PROMPTS", "STUDY_SEEDS", "EvaluationCancelled", "EvaluationReport", "EvaluationRequest",
           "GroupSummary", "ImageScore", "Variant", "evaluate", "format_table", "list_evaluations", "load_evaluation",
           "parse_variant", "study_seeds"]
