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


# --- full_prompt_bank: a prompt mixture before the layer gate --------------------------------
def _bank_encoder(n_prompts: int):
    from recmodel.encoder import ContentEncoder

    torch.manual_seed(0)
    config = model_config("full_prompt_bank", n_items=10, n_prompts=n_prompts)
    return ContentEncoder(config).eval()  # no dropout: outputs are compared


def test_prompt_gate_starts_with_the_mean_of_the_prompts():
    encoder = _bank_encoder(3)

    out = encoder(torch.randn(4, 3 * L, K, D))  # (B, P*L, K, D), prompt-major

    assert out.prompt_gates.shape == (4, 3)
    assert torch.allclose(out.prompt_gates, torch.full((4, 3), 1 / 3))


def test_prompt_mixture_weights_sum_to_one_and_follow_the_item():
    encoder = _bank_encoder(3)
    torch.nn.init.normal_(encoder.prompt_gate.out.weight)

    out = encoder(torch.randn(5, 3 * L, K, D))

    assert torch.allclose(out.prompt_gates.sum(dim=1), torch.ones(5), atol=1e-6)
    assert not torch.allclose(out.prompt_gates[0], out.prompt_gates[1])


def test_a_bank_of_one_prompt_encodes_like_full():
    from recmodel.encoder import ContentEncoder

    bank = _bank_encoder(1)
    full = ContentEncoder(model_config("full", n_items=10)).eval()
    full.load_state_dict(
        {k: v for k, v in bank.state_dict().items() if not k.startswith("prompt_gate.")}
    )
    x = torch.randn(4, L, K, D)

    assert torch.allclose(bank(x).z, full(x).z, atol=1e-6)


def test_each_prompts_rows_go_through_the_same_layer_experts():
    encoder = _bank_encoder(2)
    x = torch.randn(3, L, K, D)
    y = torch.randn(3, L, K, D)

    swapped = encoder(torch.cat([y, x], dim=1))
    out = encoder(torch.cat([x, y], dim=1))

    # at the uniform start the mixture is the mean, whatever the prompts' order
    assert torch.allclose(out.z, swapped.z, atol=1e-5)
