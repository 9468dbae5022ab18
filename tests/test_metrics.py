"""Class metrics of effective maps: through Z they equal the direct computation."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import silhouette_score

from relu_lens import effective_weights
from relu_lens.effective import isometric_weights
from relu_lens.metrics import (
    class_metrics,
    distance_matrix,
    n_subclusters,
    normalise_rows,
    tsne_embedding,
)
from relu_lens.models import mlp


def brute_force_ratio(F: np.ndarray, labels: np.ndarray) -> float:
    F = normalise_rows(F)
    intra, inter = [], []
    for i in range(len(F)):
        for j in range(len(F)):
            if i == j:
                continue
            d = np.linalg.norm(F[i] - F[j])
            (intra if labels[i] == labels[j] else inter).append(d)
    return float(np.mean(inter) / np.mean(intra))


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = mlp(30, [12, 9], 4, dtype=torch.float64)
    x = torch.randn(48, 30, dtype=torch.float64)
    labels = np.arange(48) % 4
    return model, x, labels


def test_metrics_through_z_equal_direct():
    model, x, labels = setup()
    W = effective_weights(model, x).W.numpy()
    Z, _ = isometric_weights(model, x)
    direct, iso = class_metrics(W, labels), class_metrics(Z.numpy(), labels)
    for key in ("intra", "inter", "ratio_inter_intra", "silhouette", "nn_agreement"):
        np.testing.assert_allclose(iso[key], direct[key], rtol=1e-10, err_msg=key)
    np.testing.assert_allclose(iso["spread"], direct["spread"], rtol=1e-10)
    np.testing.assert_array_equal(iso["n_subclusters"], direct["n_subclusters"])
    np.testing.assert_allclose(
        direct["ratio_inter_intra"], brute_force_ratio(W, labels), rtol=1e-10
    )
    D = distance_matrix(normalise_rows(W))
    assert np.isclose(direct["silhouette"], silhouette_score(D, labels, metric="precomputed"))


def test_tsne_through_z_equals_direct():
    model, x, _ = setup(1)
    W = effective_weights(model, x).W.numpy()
    Z, _ = isometric_weights(model, x)
    np.testing.assert_allclose(tsne_embedding(Z.numpy()), tsne_embedding(W), rtol=1e-6, atol=1e-6)


def test_separated_classes_score_high_and_mixed_low():
    rng = np.random.default_rng(0)
    centres = 5 * rng.standard_normal((3, 20))
    labels = np.repeat(np.arange(3), 30)
    clustered = centres[labels] + 0.1 * rng.standard_normal((90, 20))
    mixed = rng.standard_normal((90, 20))
    good, bad = class_metrics(clustered, labels), class_metrics(mixed, labels)
    assert good["ratio_inter_intra"] > 3 and good["nn_agreement"] == 1.0
    assert abs(bad["ratio_inter_intra"] - 1) < 0.1 and bad["silhouette"] < 0.05


def test_subclusters_found_when_planted():
    rng = np.random.default_rng(1)
    centres = 4 * rng.standard_normal((3, 10))
    two_blob = np.concatenate(
        [
            centres[0] + 0.1 * rng.standard_normal((20, 10)),
            centres[1] + 0.1 * rng.standard_normal((20, 10)),
        ]
    )
    assert n_subclusters(normalise_rows(two_blob))[0] == 2
    assert n_subclusters(normalise_rows(rng.standard_normal((40, 10))))[0] == 1
