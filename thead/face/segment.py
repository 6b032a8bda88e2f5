"""Person segmentation: which pixels of a picture show the person (head, hair, body) rather than the background."""

from __future__ import annotations

import numpy as np


def person_mask(image: np.ndarray) -> np.ndarray:
    """Soft person mask of a picture (MediaPipe selfie segmentation, whose models ship inside the mediapipe wheel).

    The mean of four readings: the square model (256 x 256 input) and the landscape one (144 x 256), each on the
    picture and on its mirror image. One reading alone misses parts of the person the others see: on s11.jpg
    (dark pigtails against a dark green wall) the square model left the outer half of one pigtail out and its
    mirror reading the other's, so the pigtail stayed behind in the background plate while the head moved, a
    ghost of it torn off beside the head. Each model reads the picture at its own input size, so the four err
    apart; where they agree (most of a person, all of a plain background) the mean is what each says.

    Parameters
    ----------
    image : np.ndarray
        uint8 [H, W, 3] RGB picture.

    Returns
    -------
    np.ndarray
        float32 [H, W] in [0, 1]: 1 on the person, 0 on the background (all zeros when the models find nobody).
    """
    import mediapipe as mp

    picture = np.ascontiguousarray(image)
    mirrored = np.ascontiguousarray(picture[:, ::-1])
    readings = []
    for model in (0, 1):
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model) as seg:
            for img, flip in ((picture, False), (mirrored, True)):
                mask = seg.process(img).segmentation_mask
                if mask is None:
                    mask = np.zeros(picture.shape[:2], np.float32)
                mask = np.asarray(mask, np.float32)
                readings.append(mask[:, ::-1] if flip else mask)
    return np.clip(np.mean(readings, axis=0), 0.0, 1.0).astype(np.float32)


__all__ = ["person_mask"]
