"""Person segmentation: which pixels of a picture show the person (head, hair, body) rather than the background."""

from __future__ import annotations

import numpy as np


def person_mask(image: np.ndarray) -> np.ndarray:
    """Soft person mask of a picture (MediaPipe selfie segmentation, whose model ships inside the mediapipe wheel).

    Parameters
    ----------
    image : np.ndarray
        uint8 [H, W, 3] RGB picture.

    Returns
    -------
    np.ndarray
        float32 [H, W] in [0, 1]: 1 on the person, 0 on the background (all zeros when the model finds nobody).
    """
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        result = seg.process(np.ascontiguousarray(image))
    mask = result.segmentation_mask
    if mask is None:
        return np.zeros(image.shape[:2], np.float32)
    return np.clip(np.asarray(mask, np.float32), 0.0, 1.0)


__all__ = ["person_mask"]
