"""Weight Standardization of a whole network at once: every WSConv2d's weight standardized in one
fused pass per forward (or per optimizer step), instead of ~23 small kernels per conv.

The formula is ``models.layers.standardize_weight``'s, for every output channel (a *row*: the n
weights of one output channel, n = in_channels/groups x kH x kW), with unbiased statistics:

    std form  W_hat = (W - mean) / (sigma + eps),      sigma = sqrt(sum (W - mean)^2 / (n - 1))
    var form  W_hat = (W - mean) / sqrt(sigma^2 + eps)

All the rows of all the convs lie end to end in one flat vector (each weight in its memory
order: the statistics of a row do not depend on the order of its elements, so a channels-last
weight is not copied), and each statistic is one segmented reduction over it, summed in float64
(exact whatever a device's reduction order). The forward's elementwise work stays in the
weights' dtype, as the definition's does; the backward's runs in float64 (it cancels most of
its input: see ``_StandardizeRows.backward``). The backward is the closed form (``s`` the
divisor above, ``g`` the gradient of W_hat, ``y`` = W_hat):

    dL/dW = (g - mean(g) - y * k) / s,    k = sum(g * y) * s / ((n - 1) * t)

with t = sigma for the std form and t = s for the var form (a row whose sigma is 0 has y = 0 and
gets k = 0, as autograd's std gives). Forward and backward together are about 35 kernels for
the whole network, in plain eager PyTorch (``bench.py ops`` counts them).

``SharedStandardization`` is the forward pre-hook that does this for a network's root module
(``standardize_together`` installs it): before the network runs it hands every WSConv2d its
standardized weight, and clears them after. Three refinements, none of which changes a number:

- over the micro-batches of one optimizer step (``--iter-size K``) the engine holds the
  standardization (``held_over_step``): it is computed once, the first K - 1 backward passes
  stop at the standardized weights, and the last micro-batch's backward runs through the
  standardization once with the gradient of all K, inside that backward, so DDP reduces each
  parameter's gradient once, in its usual buckets;
- without gradients (evaluation) the standardized weights are computed once and kept while the
  raw weights are unchanged (their version counters say so);
- under torch.compile the hook steps aside and every conv standardizes its own weight, which
  the compiler fuses; under DataParallel each replica standardizes its own weights per forward.

The hook runs in every forward, so its own Python is kept off that path: the network's WSConv2d
and their groups are found once and kept (``_Layout``) until a module or parameter is registered
anywhere (torch's global registration hooks count those) or a weight's storage moves
(``model.to``: its data pointer says so), instead of walking the modules and grouping the convs
again in each forward.
"""
import contextlib
import weakref
from typing import Iterator, NamedTuple, Optional

import torch
import torch.nn as nn

from .layers import WS_EPS, WSConv2d

__all__ = ["standardize_weights", "conv_groups", "standardize_convs", "SharedStandardization",
           "standardize_together", "held_over_step"]

STATS = torch.float64  # the statistics' dtype: exact sums whatever the reduction order


class RowPlan(NamedTuple):
    """Where the rows lie in the flat vector: ``offsets`` (R + 1, int64) of each row's first
    element, ``rows`` (L, int32) the row of each element, the reciprocals of n and of n - 1
    (R, float64), and the sizes of each weight's stretch."""
    offsets: torch.Tensor
    rows: torch.Tensor
    inv_n: torch.Tensor
    inv_n1: torch.Tensor
    sizes: tuple


def row_plan(weights: list, device: torch.device) -> RowPlan:
    """The RowPlan of ``weights`` laid end to end, on ``device``."""
    lengths = torch.tensor([w[0].numel() for w in weights for _ in range(w.shape[0])])
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    rows = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32), lengths)
    n = lengths.to(STATS)
    return RowPlan(offsets.to(device), rows.to(device), (1 / n).to(device),
                   (1 / (n - 1)).to(device), tuple(w.numel() for w in weights))


def _row_sums(values: torch.Tensor, plan: RowPlan) -> torch.Tensor:
    return torch.segment_reduce(values, "sum", offsets=plan.offsets)


def _per_element(per_row: torch.Tensor, plan: RowPlan) -> torch.Tensor:
    return per_row.index_select(0, plan.rows)


class _StandardizeRows(torch.autograd.Function):
    """The flat vector of all rows -> the standardized rows, with the closed-form backward of
    the module docstring. Every sum runs in float64; the forward's elementwise work in the
    weights' dtype (float32 at least), the backward's in float64."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, plan: RowPlan, form: str, eps: float) -> torch.Tensor:
        mean = _row_sums(flat.to(STATS), plan) * plan.inv_n
        centred = flat - _per_element(mean.to(flat.dtype), plan)
        var = _row_sums((centred * centred).to(STATS), plan) * plan.inv_n1
        sigma = var.sqrt()
        scale = sigma + eps if form == "std" else (var + eps).sqrt_()
        out = centred / _per_element(scale.to(flat.dtype), plan)
        # k's factor per row; a sigma of 0 has y = 0, so sum(g * y) = 0 and k = 0.
        factor = scale * plan.inv_n1 / (sigma.clamp_min(1e-300) if form == "std" else scale)
        ctx.save_for_backward(out, scale, factor)
        ctx.plan = plan
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        out, scale, factor = ctx.saved_tensors
        plan = ctx.plan
        # In float64: the gradient of W is g less its components along 1 and y, and g often lies
        # mostly along y (the norm after the conv makes the loss blind to a row's scale), so
        # the difference cancels most of g; float32 would leave eps x |g| of noise in it.
        g, y = grad.to(STATS), out.to(STATS)
        k = _row_sums(g * y, plan) * factor
        mean = _row_sums(g, plan) * plan.inv_n
        per_row = _per_element(torch.stack([mean, k, scale], dim=1), plan)
        grad_flat = (g - per_row[:, 0]).sub_(y * per_row[:, 1]).div_(per_row[:, 2])
        return grad_flat.to(grad.dtype), None, None, None


def _memory_order(weight: torch.Tensor) -> list:
    """The dims of ``weight`` with the output channel first and the rest in memory order, so
    that permuting by it makes a dense weight contiguous (a channels-last one included)."""
    rest = sorted(range(1, weight.dim()), key=lambda d: -weight.stride(d))
    return [0] + rest


def _flat(weight: torch.Tensor) -> torch.Tensor:
    return weight.permute(_memory_order(weight)).reshape(-1)


def _unflat(stretch: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``stretch`` (a weight laid out by ``_flat``) as a tensor of ``like``'s shape and
    strides."""
    order = _memory_order(like)
    shaped = stretch.view([like.shape[d] for d in order])
    return shaped.permute([order.index(d) for d in range(like.dim())])


def standardize_weights(weights: list, form: str = "std", eps: float = WS_EPS,
                        plan: Optional[RowPlan] = None) -> list:
    """Every weight of ``weights`` (tensors of one device and dtype, output channel first)
    standardized as ``models.layers.standardize_weight`` does, in one fused pass: the same
    numbers (the sums in float64), each in its weight's shape and memory layout, in float32 at
    least and outside autocast. ``plan``: their RowPlan, when the caller keeps one."""
    plan = plan or row_plan(weights, weights[0].device)
    return _split(_standardized_flat(weights, form, eps, plan), weights, plan)


def _standardized_flat(weights: list, form: str, eps: float, plan: RowPlan) -> torch.Tensor:
    dtype = torch.promote_types(weights[0].dtype, torch.float32)
    with torch.autocast(device_type=weights[0].device.type, enabled=False):
        flat = torch.cat([_flat(w) for w in weights]).to(dtype)
        return _StandardizeRows.apply(flat, plan, form, eps)


def _split(flat: torch.Tensor, weights: list, plan: RowPlan) -> list:
    return [_unflat(s, w) for s, w in zip(flat.split(plan.sizes), weights)]


class _AddHeldGradient(torch.autograd.Function):
    """Identity forward; backward adds the gradient the step's earlier micro-batches left on
    ``held`` (the detached standardized weights they used)."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
        ctx.held = held
        return flat.view_as(flat)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        earlier = ctx.held.grad
        return (grad if earlier is None else grad + earlier), None


class _Group(NamedTuple):
    """WS convs standardized together (one device, dtype and form), and their weights."""
    convs: tuple
    form: str
    plan: RowPlan
    weights: tuple


class _Held(NamedTuple):
    """A step's standardization, kept over its micro-batches: per group, the flat result with
    its graph to the raw weights and the detached copy the earlier micro-batches use; whether
    the last micro-batch has taken their gradient yet."""
    flats: tuple
    detached: tuple
    versions: tuple
    added: bool = False


def conv_groups(convs: list) -> dict:
    """``convs`` (WSConv2d) by what they must share to be standardized together: (form,
    device, dtype) -> the convs, in their order."""
    groups: dict = {}
    for conv in convs:
        groups.setdefault((conv.form, conv.weight.device, conv.weight.dtype), []).append(conv)
    return groups


def standardize_convs(convs: list) -> list:
    """The standardized weight of each WSConv2d of ``convs``, in their order, computed as a
    network computes them: together, per form, device and dtype (export's folding)."""
    standardized = {}
    for (form, _, _), same in conv_groups(convs).items():
        weights = standardize_weights([c.weight for c in same], form)
        standardized.update(zip(map(id, same), weights))
    return [standardized[id(c)] for c in convs]


def _versions(weights: list) -> tuple:
    return tuple((w.data_ptr(), w._version) for w in weights)


# How many modules and parameters have been registered in this process: a network's _Layout is
# found again only when this moved (a conv added or replaced, or given a new weight Parameter).
_REGISTRATIONS = [0]


def _count_registration(*args: object) -> None:
    _REGISTRATIONS[0] += 1  # returns None: the registration itself is left as it is


torch.nn.modules.module.register_module_module_registration_hook(_count_registration)
torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)


class _Layout(NamedTuple):
    """A network's WSConv2d (in module order), their weights, the weights' storage and the
    groups, as found when ``registrations`` registrations had been made."""
    root: weakref.ref
    registrations: int
    convs: list
    weights: list
    pointers: tuple
    groups: list


class SharedStandardization:
    """A network root's forward pre-hook: all its WSConv2d standardized together (see the
    module docstring), handed to the convs before the forward and taken back after it."""

    def __init__(self) -> None:
        self._plans: dict = {}
        self._layout: Optional[_Layout] = None
        self._cache: Optional[tuple] = None  # (versions, weights) for forwards without grad
        self._held: Optional[_Held] = None
        self._step: Optional[bool] = None  # inside a held step: whether this is its last

    def __deepcopy__(self, memo: dict) -> "SharedStandardization":
        return SharedStandardization()  # a copy of the network keeps nothing of this one's

    def _groups(self, convs: list) -> list:
        groups = []
        for (form, device, _), members in conv_groups(convs).items():
            # The plan's tensors live on the weights' device, which model.to() can change.
            key = (device,) + tuple((id(c), c.weight.shape, c.weight.stride()) for c in members)
            if key not in self._plans:
                self._plans[key] = row_plan([c.weight for c in members], device)
            groups.append(_Group(tuple(members), form, self._plans[key],
                                 tuple(c.weight for c in members)))
        return groups

    def _found(self, module: nn.Module) -> _Layout:
        """``module``'s _Layout: the one kept while no registration and no storage move has
        happened since, else found again."""
        kept = self._layout
        if (kept is not None and kept.root() is module
                and kept.registrations == _REGISTRATIONS[0]
                and tuple(w.data_ptr() for w in kept.weights) == kept.pointers):
            return kept
        registrations = _REGISTRATIONS[0]
        convs = [m for m in module.modules() if isinstance(m, WSConv2d)]
        weights = [c.weight for c in convs]
        self._layout = _Layout(weakref.ref(module), registrations, convs, weights,
                               tuple(w.data_ptr() for w in weights), self._groups(convs))
        return self._layout

    def before(self, module: nn.Module, args: tuple) -> None:
        if torch.compiler.is_compiling():
            return  # each conv standardizes its own weight, and the compiler fuses it
        if getattr(module, "_is_replica", False):  # DataParallel: per replica, no state
            convs = [m for m in module.modules() if isinstance(m, WSConv2d)]
            groups = self._groups(convs)
            given = [self._fresh(g) for g in groups]
        else:
            layout = self._found(module)
            groups = layout.groups
            if not torch.is_grad_enabled():
                given = self._cached(groups, layout.weights)
            else:
                self._cache = None
                given = (self._held_step(groups, layout.weights) if self._step is not None
                         else [self._fresh(g) for g in groups])
        for group, weights in zip(groups, given):
            for conv, weight in zip(group.convs, weights):
                conv.use_standardized(weight)

    def after(self, module: nn.Module, args: tuple, output: object) -> None:
        kept = self._layout
        convs = (kept.convs if kept is not None and kept.root() is module
                 and not getattr(module, "_is_replica", False) else
                 [m for m in module.modules() if isinstance(m, WSConv2d)])
        for conv in convs:
            conv.use_standardized(None)

    @staticmethod
    def _fresh(group: _Group) -> list:
        weights = list(group.weights)
        return _split(_standardized_flat(weights, group.form, WS_EPS, group.plan), weights,
                      group.plan)

    def _cached(self, groups: list, weights: list) -> list:
        versions = _versions(weights)
        if self._cache is None or self._cache[0] != versions:
            self._cache = (versions, [self._fresh(g) for g in groups])
        return self._cache[1]

    def _held_step(self, groups: list, weights: list) -> list:
        versions = _versions(weights)
        if self._held is not None and self._held.versions != versions:
            raise RuntimeError("a conv weight changed in the middle of an optimizer step: the "
                               "step's standardization no longer fits it")
        if self._held is None:
            flats = tuple(_standardized_flat(list(g.weights), g.form, WS_EPS,
                                             g.plan) for g in groups)
            if self._step:  # a step of one micro-batch: nothing to hold
                return [_split(f, list(g.weights), g.plan)
                        for f, g in zip(flats, groups)]
            detached = tuple(f.detach().requires_grad_() for f in flats)
            self._held = _Held(flats, detached, versions)
        held = self._held
        if not self._step:
            used = held.detached
        elif held.added:  # a second forward of the last micro-batch: its gradient is added once
            used = held.flats
        else:
            used = tuple(_AddHeldGradient.apply(f, d) for f, d in zip(held.flats, held.detached))
            self._held = held._replace(added=True)
        return [_split(f, list(g.weights), g.plan) for f, g in zip(used, groups)]

    @contextlib.contextmanager
    def micro_batch(self, last: bool) -> Iterator[None]:
        """One micro-batch of a held step (``last``: the step's last, whose backward carries
        the standardization's). The hold ends after the last one, or when one fails."""
        self._step = last
        try:
            yield
        except BaseException:
            self._held = None
            raise
        finally:
            self._step = None
        if last:
            self._held = None


def standardize_together(model: nn.Module) -> nn.Module:
    """``model`` with a SharedStandardization on its root (once: a second call changes
    nothing); returns it."""
    if not any(isinstance(h, SharedStandardization) for h in _hooks(model)):
        hook = SharedStandardization()
        model.register_forward_pre_hook(hook.before)
        model.register_forward_hook(hook.after, always_call=True)
    return model


def _hooks(model: nn.Module) -> list:
    return [getattr(h, "__self__", None) for h in model._forward_pre_hooks.values()]


def held_over_step(model: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """The context of one micro-batch of an optimizer step of ``model`` (its root module): its
    WS computed once for the whole step, the backward through it run once by the ``last``
    micro-batch. A model without a SharedStandardization is unaffected."""
    for hook in _hooks(model):
        if isinstance(hook, SharedStandardization):
            return hook.micro_batch(last)
    return contextlib.nullcontext()
