from __future__ import annotations

import pytest
import torch

from recmodel.encoder import CrossLayerMoE, PerLayerLinear, TokenCompressorExpert
from tests.recmodel.helpers import D, G, K, L, model_config


@pytest.fixture
def cfg():
    return model_config("full", n_items=10)


def test_gate_weights_sum_to_one_per_item(cfg):
    torch.manual_seed(0)
    moe = CrossLayerMoE(cfg, d_in=12)
    # move the gate off its uniform start so the check is not trivial
    torch.nn.init.normal_(moe.gate.out.weight)

    out = moe(torch.randn(5, L, 12))

    assert torch.allclose(out.gates.sum(dim=1), torch.ones(5), atol=1e-6)
    assert (out.gates > 0).all()
    assert not torch.allclose(out.gates[0], out.gates[1])  # conditioned on the item


def test_moe_returns_z_gates_and_layer_outputs_shapes(cfg):
    moe = CrossLayerMoE(cfg, d_in=12)

    out = moe(torch.randn(5, L, 12))

    assert out.z.shape == (5, cfg.d_model)
    assert out.gates.shape == (5, L)
    assert out.h.shape == (5, L, cfg.d_model)
    assert torch.allclose(out.z, torch.einsum("bl,bld->bd", out.gates, out.h), atol=1e-6)


def test_gate_starts_uniform_over_layers(cfg):
    out = CrossLayerMoE(cfg, d_in=12)(torch.randn(4, L, 12))

    assert torch.allclose(out.gates, torch.full((4, L), 1 / L))


def test_token_compressor_pools_old_and_new_tokens_separately(cfg):
    torch.manual_seed(0)
    tce = TokenCompressorExpert(cfg).eval()
    x = torch.randn(2, L, K, D)
    changed = x.clone()
    # other new (generated) tokens; a shift of every value alike would vanish in the layer norm
    changed[:, :, K - G :] = torch.randn(2, L, G, D)

    e, e2 = tce(x), tce(changed)

    old_width = cfg.n_queries_old * cfg.d_model
    assert e.shape == (2, L, (cfg.n_queries_old + cfg.n_queries_new) * cfg.d_model)
    assert torch.allclose(e[..., :old_width], e2[..., :old_width], atol=1e-6)
    assert not torch.allclose(e[..., old_width:], e2[..., old_width:])


def test_per_layer_linear_applies_each_layers_own_weights():
    torch.manual_seed(0)
    layer = PerLayerLinear(3, 4, 5)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 3, 7, 4)

    y = layer(x)

    for ell in range(3):
        expected = x[:, ell] @ layer.weight[ell] + layer.bias[ell]
        assert torch.allclose(y[:, ell], expected, atol=1e-5)
