"""Batched fitting of the face model to landmark sequences: ``fit_sequence`` / ``fit_image`` -> ``FitResult``."""

from thead.fitting.fit import fit_image, fit_sequence, fit_sequences
from thead.fitting.result import FitResult

__all__ = ["FitResult", "fit_image", "fit_sequence", "fit_sequences"]
