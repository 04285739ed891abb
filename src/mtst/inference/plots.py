"""Pictures of an embedding space: PCA and t-SNE scatter plots, a cosine-similarity heatmap and
TensorBoard projector files.

Figures are built on `matplotlib.figure.Figure` and written with the Agg renderer, never through
pyplot, so no display or GUI backend is ever touched (servers, CI, notebooks alike).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mtst.errors import MtstError
from mtst.files import atomic_folder, save_figure

log = logging.getLogger(__name__)
SIMILARITY_MAX = 50  # a heatmap of more sentences is unreadable
MIN_SENTENCES = 2
PROJECTOR_CONFIG = "projector_config.pbtxt"


@dataclass
class PlotResult:
    """Files written and notes about choices made for this input (shown to the user)."""

    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    perplexity: float | None = None


def short(text: str, width: int = 28) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def tsne_perplexity(requested: float, n: int) -> tuple[float, str | None]:
    """scikit-learn rejects perplexity >= n; about a third of n keeps small sets meaningful."""
    limit = max(1.0, (n - 1) / 3)
    if requested <= limit:
        return requested, None
    note = (f"t-SNE perplexity {requested:g} is too large for {n} sentences (scikit-learn needs it "
            f"below the number of points; about a third of it works well): using {limit:.3g}")
    return limit, note


def pca_2d(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0)
    return pca.fit_transform(embeddings), pca.explained_variance_ratio_


def tsne_2d(embeddings: np.ndarray, perplexity: float, seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    from sklearn.manifold import TSNE

    init = "pca" if len(embeddings) > 3 else "random"
    tsne = TSNE(n_components=2, perplexity=perplexity, init=init, metric="cosine",
                learning_rate="auto", max_iter=max(250, max_iter), random_state=seed)
    return tsne.fit_transform(embeddings)


def _colours(labels: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    names = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def scatter_figure(coords: np.ndarray, labels: list[str] | None, texts: list[str], title: str,
                   axis_names: tuple[str, str] | None = None, annotate_max: int = 30) -> Figure:
    fig = Figure(figsize=(8.5, 6), dpi=110)
    ax = fig.add_subplot()
    groups = labels or ["sentence"] * len(texts)
    for name, colour in _colours(groups).items():
        idx = [i for i, g in enumerate(groups) if g == name]
        ax.scatter(coords[idx, 0], coords[idx, 1], s=42, color=colour, alpha=0.85,
                   edgecolors="white", linewidths=0.6, label=name)
    if len(texts) <= annotate_max:
        for (x, y), text in zip(coords, texts, strict=True):
            ax.annotate(short(text), (x, y), xytext=(4, 3), textcoords="offset points",
                        fontsize=6.5, alpha=0.8)
    if labels:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if axis_names:
        ax.set_xlabel(axis_names[0])
        ax.set_ylabel(axis_names[1])
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def similarity_figure(embeddings: np.ndarray, texts: list[str],
                      labels: list[str] | None) -> tuple[Figure, str | None]:
    """Cosine similarities of the first SIMILARITY_MAX sentences, grouped by label."""
    n = min(len(texts), SIMILARITY_MAX)
    note = None
    if len(texts) > n:
        note = f"similarity.png shows the first {n} of {len(texts)} sentences"
    order = sorted(range(n), key=lambda i: labels[i]) if labels else list(range(n))
    unit = embeddings[order] / np.clip(np.linalg.norm(embeddings[order], axis=1, keepdims=True), 1e-12, None)
    sim = unit @ unit.T
    off_diagonal = sim[~np.eye(n, dtype=bool)]
    size = 4 + 0.16 * n
    fig = Figure(figsize=(size + 1.5, size), dpi=110)
    ax = fig.add_subplot()
    # the colour range follows the pairs, not the diagonal (always 1), so structure shows
    image = ax.imshow(sim, cmap="viridis", vmin=float(off_diagonal.min()),
                      vmax=float(off_diagonal.max()))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="cosine similarity")
    names = [(f"[{labels[i]}] " if labels else "") + short(texts[i], 36) for i in order]
    ax.set_yticks(range(n), names, fontsize=5.5)
    ax.set_xticks([])
    if labels:
        groups = [labels[i] for i in order]
        bounds = [0] + [k for k in range(1, n) if groups[k] != groups[k - 1]] + [n]
        for k in bounds[1:-1]:
            ax.axhline(k - 0.5, color="white", linewidth=0.8)
            ax.axvline(k - 0.5, color="white", linewidth=0.8)
        centres = [(a + b - 1) / 2 for a, b in zip(bounds, bounds[1:], strict=False)]
        ax.set_xticks(centres, [groups[a] for a in bounds[:-1]], fontsize=8)
    shown = f" (first {n} of {len(texts)})" if note else ""
    ax.set_title(f"Cosine similarity of sentence embeddings{shown}", fontsize=10)
    fig.tight_layout()
    return fig, note



def write_projector(embeddings: np.ndarray, texts: list[str], labels: list[str] | None,
                    folder: Path, tag: str = "sentences") -> Path:
    """TensorBoard projector files (`tensorboard --logdir <folder>`, tab PROJECTOR).

    The folder is replaced as a whole; one that holds anything but projector files is refused.
    """
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / PROJECTOR_CONFIG).is_file():
        raise MtstError(f"projector folder '{folder}' exists and holds other files; choose another")
    clean = [short(t, 200) for t in texts]  # the metadata is TSV: no tabs or newlines
    metadata = [[lab, t] for lab, t in zip(labels, clean, strict=True)] if labels else clean
    with atomic_folder(folder, overwrite=True) as tmp:
        writer = SummaryWriter(log_dir=str(tmp))
        try:
            writer.add_embedding(embeddings, metadata=metadata, tag=tag,
                                 metadata_header=["label", "text"] if labels else None)
        finally:
            writer.close()
    return folder


def plot_embeddings(embeddings: np.ndarray, texts: list[str], labels: list[str] | None,
                    out: str | Path, projector_dir: str | Path | None = None,
                    perplexity: float = 30.0, seed: int = 0, tsne_iter: int = 1000,
                    annotate_max: int = 30, title: str = "") -> PlotResult:
    """Write pca.png, tsne.png, similarity.png into `out` (and projector files if asked)."""
    n = len(texts)
    if n < MIN_SENTENCES:
        raise MtstError(f"plotting needs at least {MIN_SENTENCES} sentences, got {n}")
    out = Path(out)
    result = PlotResult()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    suffix = f" - {title}" if title else ""
    coords, ratio = pca_2d(embeddings)
    fig = scatter_figure(coords, labels, texts, f"PCA of {n} sentence embeddings{suffix}",
                         (f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%})"), annotate_max)
    result.files["pca"] = save_figure(fig, out / "pca.png")
    used, note = tsne_perplexity(perplexity, n)
    result.perplexity = used
    if note:
        result.notes.append(note)
    coords = tsne_2d(embeddings, used, seed=seed, max_iter=tsne_iter)
    fig = scatter_figure(coords, labels, texts,
                         f"t-SNE of {n} sentence embeddings (perplexity {used:.3g}){suffix}",
                         None, annotate_max)
    result.files["tsne"] = save_figure(fig, out / "tsne.png")
    fig, note = similarity_figure(embeddings, texts, labels)
    if note:
        result.notes.append(note)
    result.files["similarity"] = save_figure(fig, out / "similarity.png")
    if projector_dir is not None:
        result.files["projector"] = write_projector(embeddings, texts, labels, Path(projector_dir))
    return result
