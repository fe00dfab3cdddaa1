"""Untrusted files and open ports. A pickle that would run code when loaded (its `__reduce__`
opens a marker file for writing) put where LinkedOut reads model.pt, checkpoint.pt, a model's
pytorch_model.bin or item_embeddings.npy: every load refuses it, the marker never appears, and
the user gets one line. The local Ray and the Dagster webserver listen on loopback only."""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.dataset.ingest import ingest
from pipelines.training.run import train_run
from tests.faults.conftest import assert_one_line_error, run_cli

MARKER_NAME = "PWNED"


class Payload:
    """Unpickled, it would create MARKER (code execution through __reduce__)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real id_only run (one epoch) on a small generated dataset."""
    root = tmp_path_factory.mktemp("untrusted")
    dataset = root / "dataset"
    dataset.mkdir()
    rng = np.random.default_rng(0)
    with open(dataset / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp"])
        for u in range(30):
            for t, item in enumerate(rng.choice(12, 5, replace=False)):
                writer.writerow([f"u{u}", f"i{item}", t])
    ingest(dataset)
    run = root / "run"
    train_run(dataset, None, run, "id_only", epochs=1, progress=False)
    return run


def _evil_copy(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    return run, tmp_path / MARKER_NAME


def test_malicious_model_file_is_refused_without_running_it(
    run_dir: Path, tmp_path: Path, fault_report
) -> None:
    run, marker = _evil_copy(run_dir, tmp_path)
    torch.save(
        {"format": 1, "model_config": {}, "state_dict": {"w": Payload(marker)}}, run / "model.pt"
    )
    results = {
        "recommend": run_cli(["recommend", run, "--history", "i1,i2"]),
        "evaluate": run_cli(["evaluate", run]),
    }
    ran = marker.exists()
    for command, result in results.items():
        fault_report.record(
            f"malicious pickle as RUN/model.pt (linkedout {command})",
            survived=result.code == 1 and not ran,
            message=result.error_line,
        )
    assert not ran
    for result in results.values():
        assert_one_line_error(result, str(run), "refused to load", "io.open")


def test_malicious_checkpoint_is_refused_without_running_it(
    run_dir: Path, tmp_path: Path, fault_report
) -> None:
    run, marker = _evil_copy(run_dir, tmp_path)
    for name in ("model.pt", "metrics.json"):  # an unfinished run: training resumes
        (run / name).unlink()
    torch.save({"format": 1, "epoch": Payload(marker)}, run / "checkpoint.pt")
    import json

    dataset = json.loads((run / "config.json").read_text())["dataset"]
    result = run_cli(
        ["train", "--dataset", dataset, "--out", run, "--variant", "id_only", "--epochs", "1"]
    )
    ran = marker.exists()
    fault_report.record(
        "malicious pickle as RUN/checkpoint.pt (linkedout train, resuming)",
        survived=result.code == 1 and not ran,
        message=result.error_line,
    )
    assert not ran
    assert_one_line_error(result, "refused to load", "io.open")


def test_pickled_item_embeddings_are_refused(run_dir: Path, tmp_path: Path, fault_report) -> None:
    run, marker = _evil_copy(run_dir, tmp_path)
    np.save(
        run / "item_embeddings.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True
    )
    result = run_cli(["recommend", run, "--history", "i1"])
    ran = marker.exists()
    fault_report.record(
        "pickled object array as RUN/item_embeddings.npy",
        survived=result.code == 1 and not ran,
        message=result.error_line,
    )
    assert not ran
    assert_one_line_error(result, "allow_pickle=False")


def test_model_directory_with_pickled_weights_is_refused(
    tiny_model: Path, tmp_path: Path, fault_report
) -> None:
    """transformers reads pytorch_model.bin with torch.load(weights_only=True); the actor turns
    the refusal into the run's one-line error (here the in-process part of it)."""
    from featurizer.config import load_preset
    from pipelines.extraction.workers import ExtractVideos

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "model.safetensors").unlink()
    marker = tmp_path / MARKER_NAME
    torch.save({"model.x": Payload(marker)}, model / "pytorch_model.bin")
    actor = ExtractVideos(load_preset("demo").replace(model=str(model)), row_writers=[])  # type: ignore[arg-type]
    ran = marker.exists()
    fault_report.record(
        "model directory with a malicious pytorch_model.bin",
        survived=bool(actor.load_error) and not ran,
        message=f"linkedout extract: error: {actor.load_error}",
    )
    assert not ran
    assert actor.extractor is None
    assert "refused to load a pickled weight file" in actor.load_error
    assert str(model) in actor.load_error and "\n" not in actor.load_error


# --- network --------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _listening(pids: list[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN owned by `pids`."""
    owner: dict[int, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owner[int(target[8:-1])] = pid
        except OSError:
            continue
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or int(fields[9]) not in owner:  # 0A: LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            words = b"".join(
                struct.pack("<I", int.from_bytes(raw[i : i + 4], "big"))
                for i in range(0, len(raw), 4)
            )
            found.append(
                (socket.inet_ntop(family, words), int(hex_port, 16), owner[int(fields[9])])
            )
    return found


def _loopback(address: str) -> bool:
    return (
        address.startswith("127.")
        or address in ("::1", "::ffff:127.0.0.1")
        or address.startswith("::ffff:127.")
    )


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only_without_a_dashboard(
    ray_local: None, fault_report
) -> None:
    import ray

    node_ip = ray.nodes()[0]["NodeManagerAddress"]
    info = ray._private.worker.global_worker.node.address_info
    sockets = _listening(_descendants(os.getpid()))
    exposed = [s for s in sockets if not _loopback(s[0])]
    fault_report.record(
        "local Ray: listening addresses",
        survived=node_ip == "127.0.0.1" and not exposed and not info.get("webui_url"),
        message=f"node {node_ip}; {len(sockets)} listening sockets, on "
        f"{sorted({s[0] for s in sockets})}; dashboard: {info.get('webui_url') or 'none'}",
    )
    assert node_ip == "127.0.0.1"
    assert sockets, "found no listening socket of the local Ray"
    assert exposed == [], exposed
    assert not info.get("webui_url")


def test_dagster_webserver_defaults_to_loopback(fault_report) -> None:
    """`dagster dev` passes --host to dagster-webserver only when given one; the webserver's own
    default host is 127.0.0.1 (read from the installed packages, not started here: the browser
    test starts it)."""
    import inspect

    import dagster._cli.dev as dev
    from dagster_webserver.cli import DEFAULT_WEBSERVER_HOST, dagster_webserver

    host_option = next(p for p in dagster_webserver.params if p.name == "host")
    forwards_only_if_given = '["--host", host] if host else []' in inspect.getsource(dev)
    fault_report.record(
        "Dagster webserver: default host",
        survived=DEFAULT_WEBSERVER_HOST == "127.0.0.1" and forwards_only_if_given,
        message=f"dagster-webserver --host defaults to {host_option.default}; `dagster dev` "
        f"{'passes --host only when given' if forwards_only_if_given else 'sets its own host'}",
    )
    assert host_option.default == DEFAULT_WEBSERVER_HOST == "127.0.0.1"
    assert forwards_only_if_given


def test_pickle_payload_would_run_if_loaded_unsafely(tmp_path: Path) -> None:
    """The control: the payload is real (pickle.loads runs it), so the refusals above mean it."""
    marker = tmp_path / MARKER_NAME
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()
