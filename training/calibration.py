"""Temperature scaling (Guo et al. 2017) and expected calibration error."""

from __future__ import annotations

import math

import numpy as np
import torch

from judge.core.errors import UserError


def fit_temperature(logits: np.ndarray, y: np.ndarray, *, max_iter: int = 200) -> float:
    """The T > 0 that minimises validation NLL of softmax(logits / T)."""
    if len(y) == 0:
        return 1.0
    z = torch.tensor(logits, dtype=torch.float64)
    target = torch.tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T so T stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), target)
        loss.backward()
        return loss

    if not torch.isfinite(z).all():
        raise UserError(
            "the judge's validation scores are not finite (NaN or infinite logits: training diverged); "
            "lower --lr and train again"
        )
    optimizer.step(closure)
    temperature = float(log_t.exp().item())
    if not math.isfinite(temperature) or temperature <= 0:
        raise UserError(
            f"temperature scaling gave T = {temperature}, not a positive finite number; lower --lr and train again"
        )
    return temperature


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(torch.tensor(logits, dtype=torch.float64) / temperature, dim=-1).numpy()


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, *, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    if len(y) == 0:
        return float("nan")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)
