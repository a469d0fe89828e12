"""RL stage — GRPO group advantages (paper Lemma 3.1).

    A_m = (r_m − mean_g r) / (std_g r + eps),   std the POPULATION standard deviation
                                                (1/G normalisation, ``unbiased=False``).

Lemma 3.1: with binary rewards and k positives in a group of G (p = k/G) and eps = 0,
A⁺ = √((1−p)/p) and A⁻ = −√(p/(1−p)), and the group surrogate

    (1/G) Σ_m A_m s_m = √(p(1−p)) · (mean_{pos} s − mean_{neg} s),

a linear surrogate of the group's AUC. With one positive (p = 1/G) the constant is

    c = √(G−1)/G          (e.g. G = 16: c = √15/16 ≈ 0.2421).

With eps > 0 it becomes c_eps = ((G−1)/G²) / (√(G−1)/G + eps). (Torch's default ``std`` is the
unbiased one, which would give c = √(G−1)·√((G−1)/G)/G instead; we are explicit.)

A group whose rewards are all equal (no positive in the beam, or all candidates rewarded alike)
carries no signal: its advantages are exactly 0, never NaN.
"""

from __future__ import annotations

import torch


def group_advantages(rewards_BG: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """A_BG = (r − mean_G r) / (std_G r + eps), population std; all-equal groups give exactly 0.

    Args:
        rewards_BG: float [B, G].
        eps: added to the group's std (the paper's and TRL's stabiliser).
    Returns:
        float [B, G], each row summing to 0.
    """
    mean_B1 = rewards_BG.mean(dim=-1, keepdim=True)
    std_B1 = rewards_BG.std(dim=-1, keepdim=True, unbiased=False)
    advantages_BG = (rewards_BG - mean_B1) / (std_B1 + eps)
    # Rounding in the mean can leave tiny non-zeros in a constant group; there is no signal there.
    constant_B1 = (rewards_BG == rewards_BG[..., :1]).all(dim=-1, keepdim=True)
    return torch.where(constant_B1, torch.zeros_like(advantages_BG), advantages_BG)


def lemma_constant(group_size: int, eps: float = 0.0) -> float:
    """Lemma 3.1's c for one positive in a group of G with population std:
    c = ((G−1)/G²) / (√(G−1)/G + eps), which is √(G−1)/G at eps = 0."""
    g = float(group_size)
    return ((g - 1.0) / g**2) / ((g - 1.0) ** 0.5 / g + eps)
