"""Class structure of sets of effective maps (numpy; one row of features per sample).

Every metric here needs only distances between the rows, so it takes W_eff(x) flattened or
its isometric representation Z(x) (``relu_lens.effective.isometric_weights``) and gives the
same numbers. Rows are normalised to unit Frobenius norm first (W_eff of a homogeneous net
depends on the direction of x, its scale on the weights' scale; normalising compares shapes).

Definitions (all on the normalised rows w_i, d_ij = ||w_i - w_j||):
- intra = mean d_ij over pairs i != j of the same class; inter = mean over different classes;
  ``ratio_inter_intra`` = inter / intra (rises when same-class maps converge and different
  classes diverge, Ye 2025).
- ``spread`` (per class) = mean d_ij within the class.
- ``silhouette`` = mean silhouette coefficient with the class labels as clusters.
- ``nn_agreement`` = fraction of samples whose nearest other sample has the same label.
- ``n_subclusters`` (per class): the k in 2..k_max maximising the silhouette of Ward
  clustering of the class's rows; 1 when that best silhouette is below ``threshold``
  (default 0.15: weak structure is not counted as sub-classes).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

SUBCLUSTER_THRESHOLD = 0.15


def normalise_rows(F: np.ndarray) -> np.ndarray:
    """Rows of F (sample, features) divided by their norms; zero rows stay zero."""
    F = np.asarray(F, dtype=np.float64).reshape(len(F), -1)
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    return np.divide(F, norms, out=np.zeros_like(F), where=norms > 0)


def distance_matrix(F: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of F (sample, features), via the Gram matrix."""
    F = np.asarray(F, dtype=np.float64).reshape(len(F), -1)
    sq = np.einsum("ij,ij->i", F, F)
    D2 = sq[:, None] + sq[None, :] - 2.0 * (F @ F.T)
    np.fill_diagonal(D2, 0.0)
    return np.sqrt(np.maximum(D2, 0.0))


def class_distances(D: np.ndarray, labels: np.ndarray) -> dict[str, float | np.ndarray]:
    """Mean intra- and inter-class distances, their ratio, and the per-class spread."""
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    intra_mask, inter_mask = same & off, ~same
    if not intra_mask.any() or not inter_mask.any():
        raise ValueError("need at least two classes and two samples in some class")
    intra, inter = D[intra_mask].mean(), D[inter_mask].mean()
    classes = np.unique(labels)
    spread = np.array(
        [
            D[np.ix_(labels == c, labels == c)][off[np.ix_(labels == c, labels == c)]].mean()
            if (labels == c).sum() > 1
            else np.nan
            for c in classes
        ]
    )
    return {"intra": intra, "inter": inter, "ratio_inter_intra": inter / intra, "spread": spread}


def nn_agreement(D: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose nearest other sample (by D) has the same label."""
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    return float(np.mean(labels[np.argmin(D, axis=1)] == labels))


def n_subclusters(
    F_class: np.ndarray, k_max: int = 6, threshold: float = SUBCLUSTER_THRESHOLD
) -> tuple[int, float]:
    """(k, silhouette): sub-clusters of one class's normalised rows by Ward clustering."""
    if len(F_class) < 4:
        return 1, float("nan")
    tree = linkage(F_class, method="ward")
    D = distance_matrix(F_class)
    best_k, best_s = 1, -1.0
    for k in range(2, min(k_max, len(F_class) - 1) + 1):
        assign = fcluster(tree, k, criterion="maxclust")
        if len(np.unique(assign)) < 2:
            continue
        s = silhouette_score(D, assign, metric="precomputed")
        if s > best_s:
            best_k, best_s = k, s
    return (best_k if best_s >= threshold else 1), best_s


def class_metrics(F: np.ndarray, labels: np.ndarray) -> dict[str, float | np.ndarray]:
    """All metrics of the module docstring for features F (sample, ...) and labels."""
    Fn = normalise_rows(F)
    D = distance_matrix(Fn)
    out = class_distances(D, labels)
    out["silhouette"] = float(silhouette_score(D, labels, metric="precomputed"))
    out["nn_agreement"] = nn_agreement(D, labels)
    out["n_subclusters"] = np.array(
        [n_subclusters(Fn[labels == c])[0] for c in np.unique(labels)], dtype=np.int64
    )
    return out


def tsne_embedding(
    F: np.ndarray, seed: int = 0, perplexity: float = 30.0, n_components: int = 2
) -> np.ndarray:
    """t-SNE of the normalised rows from their distance matrix (random init, fixed seed), so
    W_eff and its isometric Z give the same embedding."""
    D = distance_matrix(normalise_rows(F))
    perplexity = min(perplexity, (len(D) - 1) / 3)
    model = TSNE(
        n_components=n_components,
        metric="precomputed",
        init="random",
        perplexity=perplexity,
        random_state=seed,
    )
    return model.fit_transform(D)
