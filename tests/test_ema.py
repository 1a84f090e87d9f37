"""The EMA of the weights equals its closed form after k optimizer steps of the engine."""
import torch
import torch.nn as nn

from builders import engine_recipe
from utils.train.ema import create_ema
from utils.train.engine import TrainPlan, train_one_epoch


class ListLoader:
    """The engine's loader interface over a fixed list of batches."""

    device = "cpu"

    def __init__(self, batches):
        self.batches = batches

    def batch_sizes(self):
        return [len(y) for _, y in self.batches]

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def test_ema_weights_equal_the_closed_form_after_k_steps():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    decay, k = 0.9, 5
    ema = create_ema(model, decay)
    seen = []  # the weights after every optimizer step
    optimizer.register_step_post_hook(lambda *a: seen.append(model.weight.detach().clone()))
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(k)]
    train_one_epoch(model, ListLoader(batches), engine_recipe(optimizer, ema=ema, num_classes=3),
                    TrainPlan(epochs=1, show_progress=False), 0)
    assert len(seen) == k
    # First update copies; then ema = decay * ema + (1 - decay) * w.
    expected = decay ** (k - 1) * seen[0]
    for j in range(1, k):
        expected = expected + (1 - decay) * decay ** (k - 1 - j) * seen[j]
    assert torch.allclose(ema.module.weight, expected, atol=1e-6)
    assert not torch.allclose(ema.module.weight, model.weight)
