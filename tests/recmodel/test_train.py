from __future__ import annotations

import pytest
import torch

from recmodel.checkpoint import CheckpointMismatchError
from recmodel.config import TrainConfig
from recmodel.data import build_splits
from recmodel.model import build_model
from recmodel.train import _warmup, fit
from tests.recmodel import helpers


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def data():
    splits = helpers.splits(n_users=45, n_items=18)
    return splits, helpers.features(splits.n_items, missing=(4,))[0]


def _fit(data, variant, checkpoint, on_epoch=None, **train):
    splits, item_features = data
    return fit(
        helpers.model_config(variant, splits.n_items),
        helpers.train_config(**train),
        splits,
        helpers.bank(variant, item_features),
        checkpoint,
        on_epoch=on_epoch,
    )


@pytest.mark.parametrize(
    ("variant", "loss"),
    [
        ("full", {"warmup_steps": 3}),
        ("id_only", {"full_softmax_max_items": 4, "n_negatives": 6}),
    ],
    ids=["full_softmax", "sampled_softmax"],
)
def test_resumed_run_ends_like_an_uninterrupted_one(data, tmp_path, variant, loss):
    whole = _fit(data, variant, tmp_path / "a.pt", epochs=3, **loss)

    def stop_after_first(log):
        if log.epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        _fit(data, variant, tmp_path / "b.pt", on_epoch=stop_after_first, epochs=3, **loss)
    resumed = _fit(data, variant, tmp_path / "b.pt", epochs=3, **loss)

    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert [h.loss for h in resumed.history] == pytest.approx([h.loss for h in whole.history])
    assert resumed.best_valid_ndcg10 == pytest.approx(whole.best_valid_ndcg10)
    for name, tensor in whole.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[name], tensor, atol=1e-6), name


def test_checkpoint_loads_with_weights_only(data, tmp_path):
    _fit(data, "full", tmp_path / "ckpt.pt", epochs=1)

    blob = torch.load(tmp_path / "ckpt.pt", weights_only=True)

    assert blob["epoch"] == 1
    assert {"model", "optimizer", "best_model", "best_metric", "rng"} <= set(blob)


def test_training_stops_after_patience_epochs_without_improvement(data):
    # lr 0: the validation metric never beats epoch 1
    result = _fit(data, "id_only", None, epochs=10, patience=2, lr_encoder=0.0, lr_head=0.0)

    assert result.epochs_run == 3
    assert result.stopped_early
    assert result.best_epoch == 1


def test_training_lowers_the_loss(data):
    result = _fit(data, "full", None, epochs=4)

    losses = [h.loss for h in result.history]
    assert losses[-1] < losses[0]


def test_checkpoint_of_another_configuration_is_refused(data, tmp_path):
    _fit(data, "id_only", tmp_path / "ckpt.pt", epochs=1)

    with pytest.raises(CheckpointMismatchError, match="lr_head"):
        _fit(data, "id_only", tmp_path / "ckpt.pt", epochs=2, lr_head=1.0)


def test_alignment_and_uniformity_terms_enter_the_loss(data):
    plain = _fit(data, "id_only", None, epochs=1)
    regularised = _fit(data, "id_only", None, epochs=1, align_weight=1.0, uniform_weight=1.0)

    assert regularised.history[0].loss != pytest.approx(plain.history[0].loss)


@pytest.mark.parametrize(
    "loss",
    [{}, {"full_softmax_max_items": 4, "n_negatives": 256}],
    ids=["full_softmax", "sampled_softmax"],
)
def test_items_without_training_interactions_are_never_negatives(loss):
    # the catalog has two more items than the interactions: no training row, like a cold-start
    # item, so they must not enter the loss; without weight decay their ID rows stay as built
    table = helpers.interactions(n_users=45, n_items=18)
    catalog = sorted(set(table.column("item").to_pylist()) | {"i900", "i901"})
    splits = build_splits(table, catalog)
    unseen = [catalog.index("i900"), catalog.index("i901")]
    assert (splits.train_counts[unseen] == 0).all()
    model_cfg = helpers.model_config("id_only", splits.n_items)
    train_cfg = helpers.train_config(epochs=2, weight_decay=0.0, **loss)
    torch.manual_seed(train_cfg.seed)
    initial = build_model(model_cfg).items.id_embedding.weight.detach().clone()

    trained = fit(model_cfg, train_cfg, splits, None, None).model.items.id_embedding.weight

    assert torch.equal(trained[unseen], initial[unseen])
    seen = splits.train_counts > 0
    assert not torch.allclose(trained[seen], initial[seen])


def test_warmup_raises_the_lr_linearly_then_holds_it():
    assert [_warmup(step, 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert _warmup(0, 0) == 1.0  # no warmup: Table 6's constant schedule


def test_the_default_schedule_counts_steps_not_epochs():
    """A warmup of optimizer steps, then a constant rate: the lr at a step is the same whatever
    the number of steps in an epoch, so it does not depend on the dataset's size."""
    defaults = TrainConfig()

    assert defaults.warmup_steps > 0 and defaults.lr_gamma == 1.0
    assert defaults.lr_encoder == defaults.lr_head  # Table 6's 1e-5 head barely moves in short runs
