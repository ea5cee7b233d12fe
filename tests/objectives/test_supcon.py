"""SupCon L_out against a slow reference written from the paper's Eq. 2 with explicit loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from cifarlab.objectives import SupConLoss


def reference(features: torch.Tensor, labels: torch.Tensor | None, t: float) -> float:
    b, v, _ = features.shape
    z = F.normalize(features.double(), dim=-1)
    items = [(z[i, a], (labels[i].item() if labels is not None else i)) for a in range(v) for i in range(b)]
    total, anchors = 0.0, 0
    for i, (zi, yi) in enumerate(items):
        denom = sum(math.exp(float(zi @ za) / t) for a, (za, _) in enumerate(items) if a != i)
        positives = [p for p, (_, yp) in enumerate(items) if p != i and yp == yi]
        if not positives:
            continue
        total += -sum(math.log(math.exp(float(zi @ items[p][0]) / t) / denom) for p in positives) / len(positives)
        anchors += 1
    return total / anchors


CASES = {
    "all distinct": torch.arange(6),
    "all same": torch.zeros(6, dtype=torch.long),
    "singleton classes": torch.tensor([0, 0, 1, 2, 2, 3]),
    "mixed": torch.tensor([1, 0, 1, 0, 2, 2]),
}


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_reference_loop(case, views):
    torch.manual_seed(hash(case) % 1000 + views)
    f = torch.randn(6, views, 5)
    loss = SupConLoss(temperature=0.1)(f, CASES[case])
    assert loss.item() == pytest.approx(reference(f, CASES[case], 0.1), abs=1e-5)


@pytest.mark.parametrize("views", [2, 3])
def test_without_labels_is_simclr(views):
    torch.manual_seed(7)
    f = torch.randn(5, views, 8)
    assert SupConLoss(0.5)(f).item() == pytest.approx(reference(f, None, 0.5), abs=1e-5)


def test_invariant_to_batch_order():
    torch.manual_seed(0)
    f, y = torch.randn(8, 2, 4), torch.tensor([0, 1, 0, 2, 1, 3, 3, 0])
    perm = torch.randperm(8)
    crit = SupConLoss(0.1)
    assert crit(f[perm], y[perm]).item() == pytest.approx(crit(f, y).item(), abs=1e-6)


def test_anchor_without_positive_gives_finite_loss_and_gradient():
    f = torch.randn(4, 1, 6, requires_grad=True)  # one view: class 3's anchor has no positive
    loss = SupConLoss(0.1)(f, torch.tensor([0, 0, 1, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()
    g = torch.randn(3, 1, 6, requires_grad=True)  # no anchor has a positive at all
    loss = SupConLoss(0.1)(g, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(g.grad).all()


def test_stable_under_bf16_autocast():
    torch.manual_seed(0)
    f = torch.randn(16, 2, 32)
    y = torch.randint(0, 4, (16,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = SupConLoss(0.05)(f.bfloat16(), y)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert low.item() == pytest.approx(SupConLoss(0.05)(f, y).item(), rel=2e-2)


def test_gather_hook_sees_the_features():
    seen = {}

    def gather(t):
        seen[t.dtype] = t.shape
        return t

    SupConLoss(0.1, gather=gather)(torch.randn(4, 2, 3), torch.tensor([0, 1, 0, 1]))
    assert seen[torch.float32] == (4, 2, 3) and seen[torch.int64] == (4,)


def test_loss_and_gradient_equal_the_official_max_subtracted_formulation():
    """Khosla et al.'s reference code computes logits - max, masks self-contrast, log-softmax by hand; same
    value and same gradient in float64."""
    torch.manual_seed(0)
    f = torch.randn(16, 2, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (16,))

    def official(features, labels, t=0.1):
        b, v, _ = features.shape
        cf = torch.cat(torch.unbind(F.normalize(features, dim=-1), 1), 0)
        mask = torch.eq(labels[:, None], labels[None, :]).double().repeat(v, v)
        logits = cf @ cf.T / t
        logits = logits - logits.max(1, keepdim=True).values.detach()
        not_self = 1 - torch.eye(b * v, dtype=torch.float64)
        mask = mask * not_self
        log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
        return -((mask * log_prob).sum(1) / mask.sum(1)).mean()

    a = official(f, y)
    (ga,) = torch.autograd.grad(a, f)
    b = SupConLoss(0.1)(f, y)
    (gb,) = torch.autograd.grad(b, f)
    assert b.item() == pytest.approx(a.item(), abs=1e-5)
    torch.testing.assert_close(gb.double(), ga, rtol=1e-4, atol=1e-6)


def test_online_probe_sends_no_gradient_into_the_encoder_and_scores_the_plain_images():
    from torch import nn

    from cifarlab.data.augment import ContrastiveViews
    from cifarlab.objectives import Contrastive, ContrastiveModel

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    encoder.forward_features = encoder.forward
    encoder.num_features = 8
    model = ContrastiveModel(encoder, nn.Linear(8, 4), num_classes=3)
    task = Contrastive(ContrastiveViews((0.5,) * 3, (0.25,) * 3, 2), SupConLoss(0.1))
    x = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])

    def encoder_grads(with_probe: bool):
        model.zero_grad()
        probe, model.probe = model.probe, (model.probe if with_probe else None)
        loss, correct, n = task.train_step(model, x, y, torch.Generator().manual_seed(1))
        model.probe = probe
        loss.backward()
        return [p.grad.clone() for p in encoder.parameters()], loss, n

    with_probe, loss_p, n = encoder_grads(True)
    assert model.probe.weight.grad is not None  # the probe trains on its own cross-entropy ...
    without, loss_0, _ = encoder_grads(False)
    assert n == 12  # every view of every image is a probe prediction
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(with_probe, without))  # ... and nothing else
    assert loss_p > loss_0
    loss_sum, correct, n = task.eval_step(model.eval(), x, y)
    logits = model.probe(encoder(task.views.eval(x)))
    assert n == 6 and int(correct) == int((logits.argmax(1) == y).sum())


def test_fp16_autocast_keeps_the_similarities_in_float32_and_the_loss_finite():
    """fp16 features of magnitude 1e4 (as an fp16 projection head can give) at a small temperature: their squared
    norms (about 1e9) overflow fp16's 65504, so the loss is finite, and equal to the float64 reference, only because
    the normalisation and the similarities are computed in float32."""
    gen = torch.Generator().manual_seed(0)
    features = (torch.randn(8, 2, 16, generator=gen) * 1e4).half().requires_grad_()
    labels = torch.arange(8) % 4
    with torch.autocast(device_type="cpu", dtype=torch.float16):
        loss = SupConLoss(temperature=0.05)(features, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()
    assert loss.item() == pytest.approx(reference(features.detach().float(), labels, 0.05), rel=1e-3)
