"""Training at store sizes: micro-batched encoding with exact gradients, cached negatives and
their refresh schedule, the memory plan, bf16 autocast, chunked evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recmodel.encoding import GradCache, encode_block
from recmodel.features import ItemFeatureBank
from recmodel.memory import BudgetError, MemoryPlan, plan_memory
from recmodel.metrics import rank_eval_set
from recmodel.model import build_model
from recmodel.plan import resolve_config
from recmodel.prefetch import Block
from recmodel.train import fit
from tests.recmodel import helpers

NO_DROPOUT = {"dropout": 0.0, "id_dropout": 0.0}


@pytest.fixture(scope="module")
def data():
    splits = helpers.splits(n_users=45, n_items=18)
    return splits, helpers.features(splits.n_items, missing=(4,))[0]


def _plan(item_bytes: int, micro_batch: int, step_bytes: int = 1 << 30) -> MemoryPlan:
    return MemoryPlan(
        budget=4 << 30,
        baseline=0,
        activation_bytes=micro_batch,  # one byte an item, below
        step_bytes=step_bytes,
        readahead_bytes=4 * item_bytes,
        hot_bytes=0,
        micro_batch=micro_batch,
        encode_batch=5,
        grad_bytes_per_item=1,
        item_bytes=item_bytes,
    )


def _blocks(bank: ItemFeatureBank, micro: list[np.ndarray]) -> list[Block]:
    return [Block(m, *bank.gather(m)) for m in micro]


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("variant", ["full", "full_id_fusion", "mean_pool_moe"])
def test_micro_batched_encoding_gives_the_one_shot_gradients(data, variant):
    splits, item_features = data
    cfg = helpers.model_config(variant, splits.n_items, **NO_DROPOUT)
    bank = helpers.bank(variant, item_features)
    items = np.arange(splits.n_items)  # item 4 has no features: the missing-content vector
    weights = torch.randn(len(items), cfg.d_model, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = build_model(cfg)

    whole = encode_block(model, items, _blocks(bank, [items])[0], torch.device("cpu")).vectors
    (whole * weights).sum().backward()
    one_shot = _grads(model)
    model.zero_grad(set_to_none=True)
    micro = [items[s : s + 4] for s in range(0, len(items), 4)]
    cache = GradCache(model, torch.device("cpu"))
    leaves = cache.forward(micro, _blocks(bank, micro))
    (leaves * weights).sum().backward()
    cache.backward(leaves.grad, micro, _blocks(bank, micro))
    micro_batched = _grads(model)

    assert torch.allclose(leaves, whole.detach(), atol=1e-6)
    assert one_shot.keys() == micro_batched.keys()
    for name, grad in one_shot.items():
        assert torch.allclose(micro_batched[name], grad, rtol=1e-4, atol=1e-6), name


def test_second_pass_replays_the_dropout_masks_of_the_first(data):
    # with dropout on, pass 2 must redraw pass 1's masks: the gradients then equal those of
    # the same micro-batches encoded once with their graphs kept
    splits, item_features = data
    cfg = helpers.model_config("full", splits.n_items, dropout=0.5)
    bank = helpers.bank("full", item_features)
    items = np.arange(splits.n_items)
    micro = [items[s : s + 5] for s in range(0, len(items), 5)]
    torch.manual_seed(0)
    model = build_model(cfg)

    torch.manual_seed(7)
    kept = torch.cat(
        [
            encode_block(model, m, b, torch.device("cpu")).vectors
            for m, b in zip(micro, _blocks(bank, micro), strict=True)
        ]
    )
    kept.pow(2).sum().backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    cache = GradCache(model, torch.device("cpu"))
    leaves = cache.forward(micro, _blocks(bank, micro))
    leaves.pow(2).sum().backward()
    cache.backward(leaves.grad, micro, _blocks(bank, micro))

    for name, grad in expected.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("keep", [True, False], ids=["features_kept", "features_read_twice"])
def test_training_in_micro_batches_matches_one_shot_training(data, keep):
    splits, item_features = data
    cfg = helpers.model_config("full", splits.n_items, **NO_DROPOUT)
    train = helpers.train_config(epochs=2, negatives="exact")
    cold = ItemFeatureBank(item_features, "tokens", hot_bytes=0)
    item_bytes = cold.item_bytes

    one_shot = fit(cfg, train, splits, cold, None, memory=_plan(item_bytes, micro_batch=1000))
    step_bytes = 1 << 30 if keep else item_bytes
    micro = fit(cfg, train, splits, cold, None, memory=_plan(item_bytes, 3, step_bytes))

    # (parameters are not compared: AdamW turns the round-off in gradients that are zero in
    # exact arithmetic, such as attention key biases', into lr-sized steps)
    assert [h.loss for h in micro.history] == pytest.approx([h.loss for h in one_shot.history])
    assert [h.valid_ndcg10 for h in micro.history] == pytest.approx(
        [h.valid_ndcg10 for h in one_shot.history]
    )


def test_cached_negatives_encode_only_the_batch_items(data):
    splits, item_features = data
    cfg = helpers.model_config("full", splits.n_items)
    bank = helpers.bank("full", item_features)
    plan = _plan(bank.item_bytes, micro_batch=1000)
    n_seen = int((splits.train_counts > 0).sum())
    exact = fit(
        cfg,
        helpers.train_config(epochs=1, batch_size=4, negatives="exact"),
        splits,
        bank,
        None,
        memory=plan,
    )

    cached = fit(
        cfg,
        helpers.train_config(epochs=1, batch_size=4, negatives="cached"),
        splits,
        bank,
        None,
        memory=plan,
    )

    assert exact.history[0].items_encoded == n_seen * exact.history[0].steps
    assert cached.history[0].items_encoded < exact.history[0].items_encoded
    assert cached.negatives == "cached" and math.isfinite(cached.history[0].loss)


def test_cached_negatives_lower_the_loss(data):
    splits, item_features = data
    cfg = helpers.model_config("full", splits.n_items)

    result = fit(
        cfg,
        helpers.train_config(epochs=4, negatives="cached", cache_refresh_steps=1),
        splits,
        helpers.bank("full", item_features),
        None,
    )

    losses = [h.loss for h in result.history]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("every", "expected"), [(2, [2, 1, 2]), (0, [1, 0, 0])])
def test_cache_refreshes_on_the_configured_schedule(data, every, expected):
    # 45 users, batch 16: 3 steps an epoch (global steps 0-2, 3-5, 6-8). Every 2 steps: at
    # 0, 2 | 4 | 6, 8. Once per epoch: epoch 1 computes it, later epochs take validation's.
    splits, item_features = data
    events: list[str] = []
    train = helpers.train_config(
        epochs=3, batch_size=16, negatives="cached", cache_refresh_steps=every, patience=10
    )

    result = fit(
        helpers.model_config("full", splits.n_items),
        train,
        splits,
        helpers.bank("full", item_features),
        None,
        on_event=events.append,
    )

    assert [h.steps for h in result.history] == [3, 3, 3]
    assert [h.refreshes for h in result.history] == expected
    assert len(events) == sum(expected)
    assert all("items/s" in line for line in events)


def test_resumed_cached_run_ends_like_an_uninterrupted_one(data, tmp_path):
    splits, item_features = data
    cfg = helpers.model_config("full", splits.n_items)
    train = helpers.train_config(epochs=3, batch_size=16, negatives="cached", cache_refresh_steps=2)
    bank = helpers.bank("full", item_features)
    whole = fit(cfg, train, splits, bank, tmp_path / "a.pt")

    class Stop(Exception):
        pass

    def stop_after_first(log):
        if log.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(cfg, train, splits, bank, tmp_path / "b.pt", on_epoch=stop_after_first)
    resumed = fit(cfg, train, splits, bank, tmp_path / "b.pt")

    assert [h.loss for h in resumed.history] == pytest.approx([h.loss for h in whole.history])
    for name, tensor in whole.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[name], tensor, atol=1e-6), name


def test_max_steps_ends_the_run(data):
    splits, item_features = data

    result = fit(
        helpers.model_config("id_only", splits.n_items),
        helpers.train_config(epochs=5, batch_size=16, max_steps=4),
        splits,
        None,
        None,
    )

    assert [h.steps for h in result.history] == [3, 1] and result.steps == 4


def test_auto_negatives_are_exact_while_a_step_fits_and_cached_past_it(data):
    splits, _ = data
    cfg = helpers.model_config("full", splits.n_items)
    n_seen = int((splits.train_counts > 0).sum())
    auto = helpers.train_config()

    roomy = resolve_config(cfg, auto, splits, _plan(100, micro_batch=n_seen))
    tight = resolve_config(cfg, auto, splits, _plan(100, micro_batch=n_seen - 1))

    assert roomy.negatives == "exact" and tight.negatives == "cached"
    assert roomy.device == "cpu" and roomy.precision == "fp32" and roomy.memory_budget_bytes > 0


def test_memory_plan_sizes_micro_batches_from_the_budget():
    shape = (6, 64, 3584)  # a 7B backbone's row: 2.75 MB

    plan = plan_memory(12 << 30, shape, d_model=64, encode_batch_size=256, baseline=1 << 30)

    shares = plan.activation_bytes + plan.step_bytes + plan.readahead_bytes + plan.hot_bytes
    assert shares <= 12 << 30
    assert plan.micro_batch == plan.activation_bytes // plan.grad_bytes_per_item
    assert 100 < plan.micro_batch < 1000


def test_budget_too_small_for_one_item_names_the_sizes():
    with pytest.raises(BudgetError, match=r"memory_budget_bytes=.*too small.*give at least"):
        plan_memory(1 << 30, (6, 64, 3584), d_model=64, encode_batch_size=256, baseline=1 << 30)


def test_bf16_autocast_path_trains(data):
    # the GPU path's autocast, run on the CPU where it is also supported
    splits, item_features = data

    result = fit(
        helpers.model_config("full", splits.n_items),
        helpers.train_config(epochs=1, precision="bf16"),
        splits,
        helpers.bank("full", item_features),
        None,
    )

    assert math.isfinite(result.history[0].loss)


def test_evaluation_in_chunks_ranks_like_one_pass(data):
    splits, _ = data
    rng = np.random.default_rng(0)
    users = torch.from_numpy(rng.standard_normal((len(splits.test), 8)).astype(np.float32))
    items = torch.from_numpy(rng.standard_normal((splits.n_items, 8)).astype(np.float32))

    whole = rank_eval_set(users, items, splits.test)
    chunked = rank_eval_set(users, items, splits.test, max_bytes=16 * splits.n_items * 3)

    assert np.array_equal(whole, chunked)
