"""Training on several workers with Ray Train: the same recmodel loop in every worker, which
plans its own memory and opens the store itself (the store is never shipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines import hooks
from pipelines.errors import PipelineError, one_line
from recmodel.checkpoint import EpochLog
from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import Splits
from recmodel.plan import feature_bank, plan_training
from recmodel.train import fit

RAY_TRAIN_DIR = "ray_train"  # in the run directory: Ray Train's storage and the rendezvous files


def _ray_worker(config: dict[str, Any]) -> None:
    """TorchTrainer's train_loop_per_worker: the same recmodel loop, in a gloo process group
    that Ray Train has already set up; every worker plans its memory, opens the store itself
    and reports each epoch to Ray."""
    import ray.train

    if config["hooks"] is not None:  # a test's (pipelines.hooks)
        config["hooks"].worker_started("train")
    model_cfg = ModelConfig.from_dict(config["model"])
    train_cfg = TrainConfig.from_dict(config["train"])
    splits = config["splits"]
    bank = memory = None
    if model_cfg.uses_features:
        features = config["features_factory"]()
        memory = plan_training(model_cfg, train_cfg, splits, features.shape).memory
        assert memory is not None
        bank = feature_bank(features, model_cfg, memory, splits)

    def on_epoch(log: EpochLog) -> None:
        ray.train.report({"epoch": log.epoch, "loss": log.loss, "valid_ndcg10": log.valid_ndcg10})

    fit(
        model_cfg,
        train_cfg,
        splits,
        bank,
        Path(config["checkpoint"]),
        memory=memory,
        on_epoch=on_epoch,
        data_version=config["data_version"],
    )


def fit_with_ray(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    splits: Splits,
    features_factory: Any,
    checkpoint: Path,
    workers: int,
    out: Path,
    data_version: str | None = None,
) -> None:
    """Train on `workers` Ray Train workers (gloo on the CPU, one GPU each over NCCL); the run's
    state ends in `checkpoint`, as training in this process would leave it (recording
    `data_version`, checkpoint.py)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.ray_runtime import ensure_ray

    ensure_ray()
    gpu = train_cfg.device == "cuda"  # one GPU a worker, reduced over NCCL
    backend = "nccl" if gpu else "gloo"
    torch_config = (
        FileRendezvous(backend=backend, directory=str((out / RAY_TRAIN_DIR).resolve()))
        if train_cfg.rendezvous == "file"
        else TorchConfig(backend=backend)
    )
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={
            "model": model_cfg.to_dict(),
            "train": train_cfg.to_dict(),
            "splits": splits,
            "features_factory": features_factory if model_cfg.uses_features else None,
            "checkpoint": str(checkpoint.resolve()),
            "data_version": data_version,
            "hooks": hooks.for_workers(),
        },
        torch_config=torch_config,
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpu,
            resources_per_worker={"CPU": 1, "GPU": 1} if gpu else {"CPU": 1},
            placement_strategy=train_cfg.placement,
        ),
        run_config=RunConfig(
            name=f"train-{model_cfg.variant}",
            storage_path=str((out / RAY_TRAIN_DIR).resolve()),
            failure_config=FailureConfig(max_failures=1),  # restarts resume from the checkpoint
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # Ray wraps worker errors; one line for the CLI
        raise PipelineError(f"Ray Train run failed: {one_line(exc, 500)}") from exc


def _file_rendezvous() -> type:
    """A TorchConfig whose process group meets through a file (torch's FileStore) instead of the
    TCP store torch starts on rank 0, which listens on every interface and has no bind address:
    for workers that all see one filesystem (one machine, or a shared one) and must open no
    socket beyond loopback (GLOO_SOCKET_IFNAME=lo then keeps gloo's own sockets there too).
    Ray Train has no public hook for another rendezvous (TorchConfig.init_method is env or
    tcp), so this reuses its torch backend's own process-group setup, private names included."""
    import os
    import uuid
    from dataclasses import dataclass

    import ray
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import (
        _set_torch_distributed_env_vars,
        _setup_torch_process_group,
        _TorchBackend,
    )

    class _Backend(_TorchBackend):
        def on_start(self, worker_group: Any, backend_config: Any) -> None:
            os.makedirs(backend_config.directory, exist_ok=True)
            # a fresh file per worker-group start: a restarted group must not meet an old one
            path = os.path.join(backend_config.directory, f"rendezvous-{uuid.uuid4().hex}")
            # RANK, LOCAL_RANK, ... from the train context: Ray Train v2 sets them nowhere else
            # (v1's worker group did; setting them again there is harmless)
            worker_group.execute(_set_torch_distributed_env_vars)
            ray.get(
                [
                    worker_group.execute_single_async(
                        rank,
                        _setup_torch_process_group,
                        backend=backend_config.backend,
                        world_rank=rank,
                        world_size=len(worker_group),
                        init_method=f"file://{path}",
                        timeout_s=backend_config.timeout_s,
                    )
                    for rank in range(len(worker_group))
                ]
            )

    @dataclass
    class _FileRendezvous(TorchConfig):
        directory: str = "/tmp"

        @property
        def backend_cls(self) -> type:
            return _Backend

    return _FileRendezvous


def FileRendezvous(backend: str, directory: str) -> Any:  # noqa: N802 - builds a config object
    return _file_rendezvous()(backend=backend, directory=directory)
