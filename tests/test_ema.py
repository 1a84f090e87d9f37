"""The EMA of the weights equals its closed form after k optimizer steps of the engine."""
import torch
import torch.nn as nn

from builders import engine_recipe
from utils.train.ema import create_ema
from utils.train.engine import train_one_epoch
from utils.settings.values import LoopSettings
from utils.train.plan import TrainPlan


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
                    TrainPlan(epochs=1, loop=LoopSettings(show_progress=False)), 0)
    assert len(seen) == k
    # First update copies; then ema = decay * ema + (1 - decay) * w.
    expected = decay ** (k - 1) * seen[0]
    for j in range(1, k):
        expected = expected + (1 - decay) * decay ** (k - 1 - j) * seen[j]
    assert torch.allclose(ema.module.weight, expected, atol=1e-6)
    assert not torch.allclose(ema.module.weight, model.weight)


def bn_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.LazyLinear(2))


def train_steps(model, averagers, steps, seed):
    """``steps`` SGD steps of ``model`` on random data, each followed by every averager's
    update."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        x = torch.randn(6, 3, 6, 6, generator=generator)
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for averager in averagers:
            averager.update_parameters(model)


def test_the_ema_is_torchs_ema_arithmetic_with_batchnorm_buffers_and_its_counter_copied():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    torch.manual_seed(0)
    model = bn_net()
    model(torch.randn(1, 3, 6, 6))  # materialise the lazy layer (and count one batch)
    ours = create_ema(model, 0.8)
    torchs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    train_steps(model, [ours, torchs], 4, seed=1)
    theirs = torchs.state_dict()
    for key, value in ours.state_dict().items():
        if key.endswith("num_batches_tracked"):
            # The batch counter is the model's, not an average of counts.
            assert value == model.state_dict()[key[len("module."):]] == 5  # 1 + 4 steps
        else:
            assert torch.equal(value, theirs[key]), key
    assert ours.updates == int(ours.n_averaged) == 4


def test_a_loaded_ema_averages_on_instead_of_copying_again():
    torch.manual_seed(0)
    model = bn_net()
    model(torch.randn(1, 3, 6, 6))
    straight = create_ema(model, 0.8)
    train_steps(model, [straight], 2, seed=1)
    resumed = create_ema(model, 0.8)
    resumed.load_state_dict(straight.state_dict())
    assert resumed.updates == 2
    train_steps(model, [straight, resumed], 2, seed=2)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert not torch.equal(resumed.module[0].weight, model[0].weight)


def test_ema_decay_outside_0_1_is_refused():
    import pytest
    for decay in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="EMA decay must be in"):
            create_ema(nn.Linear(2, 2), decay)
