"""The inner loop's support loss for conditional models: each shot given the other shots."""

from __future__ import annotations

import torch

from fewgen.meta.inner import leave_one_out_loss, support_loss
from fewgen.models import call, params_of
from fewgen.models.toy_gauss import ToyGauss


def setup():
    torch.manual_seed(0)
    model = ToyGauss(dim=2, hidden=16, context=8, scale=3.0)
    g = torch.Generator().manual_seed(1)
    support = 3 * torch.randn(3, 4, 2, generator=g)
    mask = torch.tensor([[True, True, True, True], [True, False, True, False], [True, False, False, False]])
    return model, params_of(model), support, mask


def test_leave_one_out_scores_each_shot_given_the_other_present_shots():
    model, params, support, mask = setup()
    got = leave_one_out_loss(model, params, support, mask, None)
    terms = []
    for t in range(3):
        for k in range(4):
            if not mask[t, k]:
                continue
            others = mask[t].clone()
            others[k] = False
            ctx = call(model, params, "context", support[t : t + 1], others[None])
            terms.append(call(model, params, "loss", support[t : t + 1, k : k + 1], ctx, None).squeeze())
    assert torch.allclose(got, torch.stack(terms).mean(), atol=1e-6)
    # A shot alone in its task is scored given the empty set: its context carries nothing of it.
    empty = call(model, params, "context", support[2:3], torch.zeros(1, 4, dtype=torch.bool))
    alone = call(model, params, "loss", support[2:3, :1], empty, None).squeeze()
    assert torch.allclose(leave_one_out_loss(model, params, support[2:3], mask[2:3], None), alone, atol=1e-6)


def test_conditional_support_loss_is_leave_one_out_and_a_fixed_context_is_used_as_is():
    model, params, support, mask = setup()
    assert torch.equal(support_loss(model, params, support, mask, None, conditional=True),
                       leave_one_out_loss(model, params, support, mask, None))
    ctx = call(model, params, "context", support, mask)
    per = call(model, params, "loss", support, ctx, None)
    fixed = support_loss(model, params, support, mask, None, conditional=True, context=ctx)
    assert torch.allclose(fixed, (per * mask).sum() / mask.sum(), atol=1e-6)
