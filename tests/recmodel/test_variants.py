from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodel.config import ModelConfig
from recmodel.model import build_model
from recmodel.variants import variant_names
from tests.recmodel import helpers
from tests.recmodel.helpers import L

VARIANTS = variant_names()  # the registered variants

LEARNED = [v for v in VARIANTS if v != "popularity"]
N_ITEMS = 12


@pytest.mark.parametrize("variant", LEARNED)
def test_each_variant_scores_histories_against_every_item(variant):
    torch.manual_seed(0)
    model = build_model(helpers.model_config(variant, N_ITEMS))
    bank = helpers.bank(variant, helpers.features(N_ITEMS, missing=(3,))[0])
    items = np.arange(N_ITEMS)
    feats, has = bank.gather(items) if bank else (None, None)

    encoding = model.items(torch.from_numpy(items), feats, has)
    history = encoding.vectors[torch.tensor([[0, 1, 2], [4, 5, 6]])]  # (B=2, T=3, d)
    users = model.user_vectors(history, torch.ones(2, 3, dtype=torch.bool))
    scores = users @ encoding.vectors.T

    assert encoding.vectors.shape == (N_ITEMS, 8)
    assert scores.shape == (2, N_ITEMS)
    assert torch.isfinite(scores).all()
    if model.config.uses_moe:
        assert encoding.gates.shape == (N_ITEMS - 1, L)  # items with features only
        assert encoding.h_norm.shape == (N_ITEMS - 1, L)


def test_items_without_features_get_the_missing_content_vector():
    model = build_model(helpers.model_config("full", N_ITEMS)).eval()
    bank = helpers.bank("full", helpers.features(N_ITEMS, missing=(3, 7))[0])
    feats, has = bank.gather(np.arange(N_ITEMS))

    vectors = model.items(torch.arange(N_ITEMS), feats, has).vectors

    assert torch.equal(vectors[3], model.items.missing.detach())
    assert torch.equal(vectors[7], model.items.missing.detach())
    assert not torch.equal(vectors[0], model.items.missing.detach())


def test_id_fusion_uses_content_only_for_items_never_trained():
    model = build_model(helpers.model_config("full_id_fusion", N_ITEMS)).eval()
    known = torch.ones(N_ITEMS, dtype=torch.bool)
    known[5] = False
    model.items.fusion.set_known(known)
    feats, has = helpers.bank("full_id_fusion", helpers.features(N_ITEMS)[0]).gather(
        np.arange(N_ITEMS)
    )

    encoding = model.items(torch.arange(N_ITEMS), feats, has)

    assert encoding.id_gate[5] == 0
    assert (encoding.id_gate[known] > 0).all()
    content = model.items.content(feats[5:6]).z[0]
    assert torch.allclose(encoding.vectors[5], content, atol=1e-6)


def test_content_item_vector_follows_its_features():
    model = build_model(helpers.model_config("full", N_ITEMS)).eval()
    item_features, _ = helpers.features(N_ITEMS)
    feats, has = helpers.bank("full", item_features).gather(np.arange(N_ITEMS))
    other = feats.clone()
    other[0] = feats[1]  # item 0 now looks exactly like item 1

    before = model.items(torch.arange(N_ITEMS), feats, has).vectors
    after = model.items(torch.arange(N_ITEMS), other, has).vectors

    assert torch.allclose(after[0], before[1], atol=1e-6)


def test_param_groups_put_the_ranker_in_the_head_group():
    model = build_model(helpers.model_config("full", N_ITEMS))
    train = helpers.train_config(lr_encoder=1e-4, lr_head=1e-5)

    groups = {g["name"]: g for g in model.param_groups(train)}

    head = {id(p) for name in ("head", "head_no_decay") for p in groups[name]["params"]}
    assert head == {id(p) for p in model.ranker.parameters()}
    assert groups["encoder"]["lr"] == 1e-4 and groups["head"]["lr"] == 1e-5
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0
    n_grouped = sum(len(g["params"]) for g in groups.values())
    assert n_grouped == len(list(model.parameters()))


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant 'bogus'"):
        ModelConfig(variant="bogus")
