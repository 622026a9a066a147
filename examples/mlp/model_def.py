"""The network of the mlp example (imported by train.py and by the converter via source.factory)."""

from __future__ import annotations

import torch
from torch import nn

IN_FEATURES = 16
CLASSES = 3


class MLP(nn.Module):
    """Two hidden layers, softmax scores over three classes."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(IN_FEATURES, 64), nn.ReLU(),
            nn.Linear(64, 32), nn.ReLU(),
            nn.Linear(32, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(x), dim=-1)


def build_model() -> MLP:
    return MLP()
