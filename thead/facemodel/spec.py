"""What the landmark solver (``thead.fitting``) needs of a face model: ``FittingSpec``.

A model offers itself to the solver as a ``FittingSpec``: its mean shape and expression fields restricted to the
fitted landmarks, the expression bounds and costs, and the linear map from landmark residuals to identity
coefficients. Models build one with :func:`make_fitting_spec` (``PCAFaceModel.fitting_spec``; the packaged mesh
model's is built in ``thead.fitting.fit`` from the fitting priors). It lives here, below the fitting package, so
that face models never import the solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FittingSpec:
    """What the solver needs of a model, restricted to the fitted landmarks (L of them). Tensors on one device.

    obs_index [L] long: indices into the 478 input landmarks. mean [L, 3]: mean shape (model units).
    fields [E, L, 3]: expression fields; field_gram [L, E*E]: per-landmark Gram matrices of the fields.
    lower, upper [E]: expression bounds; ridge [E]: quadratic cost; l1 [E]: linear cost of positive coefficients.
    id_map [K, L*3]: identity coefficients from the weighted residual sum; id_basis [K, L*3] (None: the
    coefficients are per-point offsets). baseline_quantile [E]: the quantile of each unit taken as a clip's
    resting value (None: no resting expression). point_weight [L]: per-landmark data weights.
    ref_len: the model's RMS landmark radius (model units), the reference for the robust thresholds.
    """

    obs_index: torch.Tensor
    mean: torch.Tensor
    fields: torch.Tensor
    field_gram: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    ridge: torch.Tensor
    l1: torch.Tensor
    id_map: torch.Tensor
    id_basis: torch.Tensor | None
    baseline_quantile: torch.Tensor | None
    point_weight: torch.Tensor
    ref_len: float


def make_fitting_spec(obs_index: np.ndarray, mean: np.ndarray, fields: np.ndarray, lower: np.ndarray,
                      upper: np.ndarray, ridge: np.ndarray, l1: np.ndarray, id_map: np.ndarray,
                      id_basis: np.ndarray | None, baseline_quantile: np.ndarray | None, point_weight: np.ndarray,
                      ref_len: float, device: torch.device) -> FittingSpec:
    """A ``FittingSpec`` of numpy arrays, as float32 tensors on ``device`` (the field Gram matrices computed).

    Parameters
    ----------
    obs_index : np.ndarray
        [L] indices into the 478 input landmarks.
    mean : np.ndarray
        [L, 3] mean shape (model units).
    fields : np.ndarray
        [E, L, 3] expression fields.
    lower, upper : np.ndarray
        [E] expression bounds (may be infinite).
    ridge : np.ndarray
        [E] quadratic cost per coefficient.
    l1 : np.ndarray
        [E] linear cost of positive coefficients.
    id_map : np.ndarray
        [K, L*3] identity coefficients from the weighted residual sum.
    id_basis : np.ndarray or None
        [K, L*3] identity basis (None: per-point offsets).
    baseline_quantile : np.ndarray or None
        [E] quantile of each unit taken as a clip's resting value (None: none).
    point_weight : np.ndarray
        [L] per-landmark data weights.
    ref_len : float
        RMS landmark radius of the model (model units).
    device : torch.device
        Where the tensors go.

    Returns
    -------
    FittingSpec
        The spec; ``field_gram`` [L, E*E] is ``sum_k fields[e, l, k] * fields[f, l, k]``.
    """
    f32 = dict(dtype=torch.float32, device=device)
    e, n = fields.shape[:2]
    gram = np.einsum("elk,flk->lef", fields, fields).reshape(n, e * e)
    return FittingSpec(
        obs_index=torch.as_tensor(obs_index, dtype=torch.long, device=device),
        mean=torch.as_tensor(mean, **f32), fields=torch.as_tensor(fields, **f32),
        field_gram=torch.as_tensor(gram, **f32), lower=torch.as_tensor(lower, **f32),
        upper=torch.as_tensor(upper, **f32), ridge=torch.as_tensor(ridge, **f32), l1=torch.as_tensor(l1, **f32),
        id_map=torch.as_tensor(id_map, **f32), id_basis=None if id_basis is None else torch.as_tensor(id_basis, **f32),
        baseline_quantile=None if baseline_quantile is None else torch.as_tensor(baseline_quantile, **f32),
        point_weight=torch.as_tensor(point_weight, **f32), ref_len=ref_len)


__all__ = ["FittingSpec", "make_fitting_spec"]
