"""minicam.optim against torch.optim: 20 steps from the same weights on the same data.

Every configuration trains a small model in minicam and in torch, step by step
(zero_grad, loss, backward, step), and compares every parameter after every
step at 1e-10 (float64), then the optimiser state (momentum buffers, moment
estimates) after the last step. A wrong first momentum buffer, a missing bias
correction or eps in the wrong place is off by far more than that.
"""
import numpy as np
import pytest
from torch_required import require_torch

torch = require_torch()

from minicam import Tensor, nn, optim  # noqa: E402
from opcheck import assert_close  # noqa: E402

STEPS = 20


def mlp(nn):
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def batches(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(5, 4)), rng.normal(size=(5, 3))) for _ in range(STEPS)]


def mse(prediction, target):
    difference = prediction - target
    return (difference * difference).mean()


def train_both(torch_optimizer, minicam_optimizer, options, dtype=np.float64, groups=None, check_every_step=True):
    """Train the twins; return (torch model, minicam model, torch optimiser, minicam optimiser, worst error)."""
    torch.manual_seed(0)
    torch_model = mlp(torch.nn).to(torch.float64 if dtype == np.float64 else torch.float32)
    model = mlp(nn)
    model.load_state_dict({k: v.detach().numpy() for k, v in torch_model.state_dict().items()})
    model.to(dtype)
    if groups is None:
        torch_opt = torch_optimizer(torch_model.parameters(), **options)
        opt = minicam_optimizer(model.parameters(), **options)
    else:
        torch_opt = torch_optimizer(groups(torch_model), **options)
        opt = minicam_optimizer(groups(model), **options)
    rtol = 1e-10 if dtype == np.float64 else 1e-5  # float32: against torch float32 (20 steps of rounding)
    worst = 0.0
    for step, (x, target) in enumerate(batches()):
        torch_opt.zero_grad()
        mse(torch_model(torch.tensor(x, dtype=torch_model[0].weight.dtype)),
            torch.tensor(target, dtype=torch_model[0].weight.dtype)).backward()
        torch_opt.step()
        opt.zero_grad()
        mse(model(x.astype(dtype)), target.astype(dtype)).backward()
        opt.step()
        if check_every_step or step == STEPS - 1:
            for (name, p), q in zip(model.named_parameters(), torch_model.parameters()):
                assert p.dtype == dtype
                worst = max(worst, assert_close(p.numpy(), q.detach().numpy(), rtol, f"step {step + 1}: {name}"))
    return torch_model, model, torch_opt, opt, worst


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.1, momentum=0.8, dampening=0.3),
    dict(lr=0.05, momentum=0.5, weight_decay=0.1, nesterov=True),
    dict(lr=0.02, momentum=0.9, maximize=True),
]

ADAM_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.05, amsgrad=True),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01, amsgrad=True),
    dict(lr=0.01, maximize=True),
]


def _ids(cases):
    return ["-".join(f"{k}={v}" for k, v in case.items()) for case in cases]


@pytest.mark.parametrize("options", SGD_CASES, ids=_ids(SGD_CASES))
def test_sgd_matches_torch(options):
    _, model, torch_opt, opt, _ = train_both(torch.optim.SGD, optim.SGD, options)
    if options.get("momentum"):
        for p, q in zip(model.parameters(), torch_opt.param_groups[0]["params"]):
            assert_close(opt.state[p]["momentum_buffer"], torch_opt.state[q]["momentum_buffer"].numpy(), 1e-10,
                         "momentum buffer")


@pytest.mark.parametrize("options", ADAM_CASES, ids=_ids(ADAM_CASES))
def test_adam_matches_torch(options):
    _, model, torch_opt, opt, _ = train_both(torch.optim.Adam, optim.Adam, options)
    for p, q in zip(model.parameters(), torch_opt.param_groups[0]["params"]):
        mine, theirs = opt.state[p], torch_opt.state[q]
        assert mine["step"] == int(theirs["step"]) == STEPS
        for key in ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if options.get("amsgrad") else ()):
            assert_close(mine[key], theirs[key].numpy(), 1e-10, key)


def test_amsgrad_branch_is_exercised():
    """The amsgrad cases above only test something if the running maximum differs from v."""
    _, model, _, opt, _ = train_both(torch.optim.Adam, optim.Adam, dict(lr=0.05, amsgrad=True), check_every_step=False)
    assert any(np.any(opt.state[p]["max_exp_avg_sq"] > opt.state[p]["exp_avg_sq"] * (1 + 1e-6)) for p in model.parameters())


def test_parameter_groups_with_their_own_options():
    def groups(model):
        return [{"params": model[0].parameters(), "lr": 0.2, "momentum": 0.5},
                {"params": model[2].parameters()}]

    train_both(torch.optim.SGD, optim.SGD, dict(lr=0.05, momentum=0.9), groups=groups)
    train_both(torch.optim.Adam, optim.Adam, dict(lr=0.01), groups=lambda m: [
        {"params": list(m[0].parameters()), "betas": (0.5, 0.9)}, {"params": list(m[2].parameters())}])


@pytest.mark.parametrize("torch_optimizer, minicam_optimizer, options", [
    (torch.optim.SGD, optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (torch.optim.Adam, optim.Adam, dict(lr=0.01, amsgrad=True)),
], ids=["SGD", "Adam"])
def test_float32_stays_float32_and_matches_torch_float32(torch_optimizer, minicam_optimizer, options):
    *_, opt, worst = train_both(torch_optimizer, minicam_optimizer, options, dtype=np.float32)
    for state in opt.state.values():
        assert all(value.dtype == np.float32 for value in state.values() if isinstance(value, np.ndarray))


def test_zero_grad_step_without_gradient_and_closure():
    used, unused = nn.Parameter(np.array([1.0, 2.0])), nn.Parameter(np.array([3.0]))
    opt = optim.Adam([used, unused], lr=0.1)
    (used * used).sum().backward()
    opt.step()
    g = np.array([2.0, 4.0])  # Adam's first step is lr * g / (|g| + eps): about lr * sign(g)
    np.testing.assert_allclose(used.numpy(), [1.0, 2.0] - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-15)
    np.testing.assert_array_equal(unused.numpy(), [3.0])
    assert unused not in opt.state
    opt.zero_grad()
    assert used.grad is None and unused.grad is None

    def closure():
        opt.zero_grad()
        loss = (used * used).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(0.9**2 + 1.9**2, rel=1e-7)
    sgd = optim.SGD([used], lr=0.5)
    (used * 2.0).sum().backward()
    sgd.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(used.grad.numpy(), [0.0, 0.0])


def test_bad_options_give_clear_errors():
    params = [nn.Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="invalid learning rate -1"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0 and dampening = 0"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"invalid betas\[1\] = 1.0"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD(params + params, lr=0.1)
    with pytest.raises(TypeError, match="can only optimise Tensors"):
        optim.SGD([np.zeros(2)], lr=0.1)
    x = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([x * 2.0], lr=0.1)
