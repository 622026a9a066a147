"""Train the mlp example: a small PyTorch classifier on synthetic data (deterministic).

Writes ``model.pt`` (a state_dict for ``model_def.py:build_model``), ``data/sample.npz`` and
``data/reference.npz`` next to this script. ``generate(rows, seed, shift)`` makes traffic for tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model_def import CLASSES, IN_FEATURES, build_model  # noqa: E402

_CENTRES = np.random.default_rng(3).normal(0, 1.5, (CLASSES, IN_FEATURES))


def generate(rows: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32, ``IN_FEATURES`` columns) and class labels; ``shift`` moves every feature."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, rows)
    features = _CENTRES[labels] + rng.normal(0, 2.5, (rows, IN_FEATURES)) + shift
    return features.astype(np.float32), labels.astype(np.int64)


def main() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    features, labels = generate(6_000, seed=5)
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    for _epoch in range(40):
        for start in range(0, len(x), 256):
            optimizer.zero_grad()
            loss = torch.nn.functional.nll_loss(torch.log(model(x[start:start + 256]) + 1e-9),
                                                y[start:start + 256])
            loss.backward()
            optimizer.step()
    model.eval()
    torch.save(model.state_dict(), HERE / "model.pt")
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    sample = generate(256, seed=9)[0]
    np.savez(data / "sample.npz", x=sample)
    reference, reference_labels = generate(4_000, seed=21)
    np.savez(data / "reference.npz", x=reference, labels=reference_labels)
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    print(f"mlp: trained on {len(y)} rows, training accuracy {accuracy:.3f}; wrote {HERE}")


if __name__ == "__main__":
    main()
