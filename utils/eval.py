"""Classification accuracy."""
import torch

__all__ = ["topk_correct", "confusion_counts"]


@torch.no_grad()
def topk_correct(output: torch.Tensor, target: torch.Tensor,
                 topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """Number of samples whose target is among the k highest scores, for each k (clipped to the
    number of classes). A target given as probabilities (B, K) counts its most likely class."""
    if target.dim() == 2:
        target = target.argmax(dim=1)
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, dim=1).indices
    hits = pred.eq(target.view(-1, 1))
    return [hits[:, :min(k, maxk)].any(dim=1).sum() for k in topk]


def confusion_counts(output: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class (top-1)."""
    pred = output.argmax(dim=1)
    return torch.bincount(target * num_classes + pred,
                          minlength=num_classes * num_classes).view(num_classes, num_classes)
