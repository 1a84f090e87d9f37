"""What `-e` writes beside the checkpoint besides its printed line: accuracy per class
(per_class_accuracy.txt) and the confusion matrix as a picture (confusion_matrix.png), from the
counts of ``utils.eval.confusion_counts``."""
import os
from typing import Sequence

import matplotlib.pyplot as plt
import torch

from .logger import savefig  # also selects matplotlib's file-only backend

__all__ = ["write_class_report"]


def write_class_report(confusion: torch.Tensor, classes: Sequence[str],
                       folder: str) -> tuple[str, str]:
    """Write the per-class accuracy table and the confusion matrix (cells: counts, coloured by
    their share of the row, the true class); returns their paths. A class absent from the
    evaluation set has accuracy 'n/a'."""
    confusion = confusion.cpu().double()
    totals = confusion.sum(dim=1)
    os.makedirs(folder, exist_ok=True)
    text = os.path.join(folder, "per_class_accuracy.txt")
    width = max(len("class"), *(len(c) for c in classes))
    with open(text, "w") as f:
        f.write(f"{'class':<{width}}\timages\tcorrect\taccuracy %\n")
        for i, name in enumerate(classes):
            n, hit = int(totals[i]), int(confusion[i, i])
            acc = f"{100.0 * hit / n:.2f}" if n else "n/a"
            f.write(f"{name:<{width}}\t{n}\t{hit}\t{acc}\n")
    rates = confusion / totals.clamp(min=1)[:, None]
    k = len(classes)
    size = min(4 + 0.35 * k, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 30:  # names and counts stay legible
        ax.set_xticks(range(k), classes, rotation=90)
        ax.set_yticks(range(k), classes)
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix: images per (true, predicted) class;\n"
                 "colour: their share of the true class")
    bar = fig.colorbar(image, ax=ax, fraction=0.046)
    bar.set_label("share of the true class's images")
    picture = os.path.join(folder, "confusion_matrix.png")
    savefig(picture, dpi=100)
    plt.close(fig)
    return text, picture
