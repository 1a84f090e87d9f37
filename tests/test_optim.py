"""Optimisers: Nesterov SGD, AdamW and LARS steps, and weight decay kept off norms and biases."""
import pytest
import torch
import torch.nn as nn

from utils.train.optim import LARS, create_optimizer, parameter_groups


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 2))


def test_no_wd_norm_leaves_norm_weights_and_biases_undecayed():
    model = small_model()
    groups = parameter_groups(model, 5e-4, no_wd_norm=True)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert groups[1]["weight_decay"] == 0
    assert {id(p) for p in groups[1]["params"]} == {id(model[1].weight), id(model[1].bias),
                                                    id(model[3].bias)}
    # With a zero gradient only decay moves a weight: the norm's weight must stay put.
    opt = create_optimizer(model, "sgd", lr=1.0, momentum=0.0, weight_decay=0.1, no_wd_norm=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt.step()
    assert torch.equal(model[1].weight, before["1.weight"])
    assert torch.allclose(model[0].weight, before["0.weight"] * 0.9)


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW),
                                       ("lars", LARS)])
def test_create_optimizer_by_name(name, cls):
    opt = create_optimizer(small_model(), name, lr=0.1, momentum=0.9, weight_decay=1e-4,
                           nesterov=name == "sgd")
    assert isinstance(opt, cls)
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"]


def test_lars_step_equals_the_formula():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))          # ||w|| = 5
    w.grad = torch.tensor([0.6, 0.8])                   # ||g|| = 1
    opt = LARS([w], lr=0.1, momentum=0.9, weight_decay=0.01, eta=0.001)
    opt.step()
    local = 0.001 * 5 / (1 + 0.01 * 5)
    v1 = local * (torch.tensor([0.6, 0.8]) + 0.01 * torch.tensor([3.0, 4.0]))
    expected = torch.tensor([3.0, 4.0]) - 0.1 * v1
    assert torch.allclose(w.detach(), expected, atol=1e-7)
    # The second step carries momentum: v2 = 0.9 v1 + local2 * (g + wd w).
    w.grad = torch.tensor([0.6, 0.8])
    w_norm = expected.norm()
    local2 = 0.001 * w_norm / (1 + 0.01 * w_norm)
    v2 = 0.9 * v1 + local2 * (torch.tensor([0.6, 0.8]) + 0.01 * expected)
    opt.step()
    assert torch.allclose(w.detach(), expected - 0.1 * v2, atol=1e-7)


def test_lars_excluded_group_takes_the_plain_sgd_step():
    b = nn.Parameter(torch.tensor([1.0]))
    b.grad = torch.tensor([0.5])
    LARS([{"params": [b], "weight_decay": 0.0, "lars": False}], lr=0.1).step()
    assert b.item() == pytest.approx(1.0 - 0.1 * 0.5)


def test_nesterov_looks_ahead_along_the_momentum():
    w = nn.Parameter(torch.tensor([1.0]))
    opt = create_optimizer(nn.ParameterList([w]), "sgd", lr=0.1, momentum=0.9, weight_decay=0.0,
                           nesterov=True)
    for g in (0.5, 0.25):
        w.grad = torch.tensor([g])
        opt.step()
    # buf1 = 0.5, step 1: g + 0.9 buf1 = 0.95; buf2 = 0.9*0.5 + 0.25 = 0.7, step 2: 0.25 + 0.63
    assert w.item() == pytest.approx(1.0 - 0.1 * 0.95 - 0.1 * 0.88)


def test_adamw_decays_weights_apart_from_the_gradient():
    w = nn.Parameter(torch.tensor([2.0]))
    opt = create_optimizer(nn.ParameterList([w]), "adamw", lr=0.1, momentum=0.9,
                           weight_decay=0.5)
    w.grad = torch.tensor([0.0])  # no gradient: only the decoupled decay moves w
    opt.step()
    assert w.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5))
