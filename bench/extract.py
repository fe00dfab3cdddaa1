"""Extraction throughput, each figure measured side by side in this one run (the machine is
shared and noisy, so only the ratios between figures of the same run mean much):

- decode frames/s (decord, T frames at the processor's size);
- model-only videos/s (the frozen model on pre-decoded frames, one thread like one actor);
- end-to-end videos/s through Ray Data (decode tasks, model actor, store rows, index commits),
  as marginal throughput: (N - 1) / (t(N videos) - t(1 video)), which removes the fixed start-up
  (actor start and model load) that every run pays once;
- end-to-end / model-only: target >= 0.85 (decoding and storage hide behind the model);
- for a preset that names a prompt bank (the demo's three prompts): the time per video of
  extracting the whole bank against its first prompt alone, model-only and end to end (marginal,
  as above, each run into a fresh store): target <= 1.6.

    python bench/extract.py [--videos 24] [--preset demo] [--bank-only]
    python bench/extract.py --preset all-tiny        # the four families' tiny checkpoints, a ratio each
    python bench/extract.py --preset qwen3_vl-8b --random-weights   # on a GPU: s/video at 32 frames

`--preset` takes one preset, a comma-separated list, or `all-tiny` (demo, tiny-llava_next_video,
tiny-qwen2_5_vl, tiny-qwen3_vl); a tiny preset's checkpoint is built in data/ on first use.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


ALL_TINY = ["demo", "tiny-llava_next_video", "tiny-qwen2_5_vl", "tiny-qwen3_vl"]
PAIRS = 3  # end-to-end runs of each side of the prompt-bank ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--preset", default="demo")
    parser.add_argument(
        "--bank-only", action="store_true", help="only the prompt bank against its first prompt"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="a preset's architecture untrained (e.g. --preset llava-onevision-7b on a GPU)",
    )
    args = parser.parse_args()
    presets = ALL_TINY if args.preset == "all-tiny" else args.preset.split(",")

    from pipelines.demo.generate import make_demo_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        dataset = work / "dataset"
        make_demo_dataset(dataset, n_videos=args.videos, n_users=8, seed=1)
        if args.bank_only:
            for preset in presets:
                measure_prompt_bank(preset, args.random_weights, dataset, work)
            return
        ratios = {p: measure_extraction(p, args.random_weights, dataset, work) for p in presets}
        if len(ratios) > 1:
            for preset, ratio in ratios.items():
                print(f"RATIO[{preset}] end-to-end / model-only = {ratio:.2f}  (target >= 0.85)")
        for preset in presets:
            measure_prompt_bank(preset, args.random_weights, dataset, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass


def measure_extraction(preset: str, random_weights: bool, dataset: Path, work: Path) -> float:
    """Decode, model-only and end-to-end rates of one preset; returns end-to-end / model-only."""
    import torch

    from featurizer.decode import decode_clip
    from featurizer.extractor import VideoLLMExtractor
    from pipelines.dataset.catalog import scan_videos
    from pipelines.dataset.ingest import read_titles
    from pipelines.extraction.extract import extract_catalog
    from pipelines.extraction.preset import resolve_extractor

    config = resolve_extractor(preset, random_weights=random_weights)
    videos = list(scan_videos(dataset, write=False).files())
    titles = read_titles(dataset)
    print(
        f"[{preset}] {len(videos)} videos, {config.frames} frames at {config.resolution}px, "
        f"model {config.model}"
    )

    t0 = time.perf_counter()
    clips = [decode_clip(v.path, config.frames, config.resolution) for v in videos]
    decode_s = time.perf_counter() - t0
    decode_fps = len(videos) * config.frames / decode_s
    print(
        f"decode:          {decode_fps:8.1f} frames/s  ({decode_s / len(videos) * 1e3:.1f} ms/video)"
    )

    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # one actor holds one CPU in the Ray run below
    t0 = time.perf_counter()
    extractor = VideoLLMExtractor(config)
    load_s = time.perf_counter() - t0
    family = extractor.family.model_type
    prompts = [member.prompt_template for member in config.members()]  # every prompt of a bank
    extractor.extract_prompts(clips[0][0], titles.get(videos[0].item, ""), clips[0][1], prompts)
    t0 = time.perf_counter()
    for video, (frames, timing) in zip(videos, clips, strict=True):
        extractor.extract_prompts(frames, titles.get(video.item, ""), timing, prompts)
    model_s = time.perf_counter() - t0
    model_vps = len(videos) / model_s
    print(
        f"model only:      {model_vps:8.2f} videos/s ({model_s / len(videos):.3f} s/video; "
        f"load {load_s:.1f} s; family {family})"
    )
    del extractor  # the Ray actor below loads its own copy: free this one's GPU memory first
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch.set_num_threads(os.cpu_count() or 1)

    one = [videos[0].item]
    t0 = time.perf_counter()
    extract_catalog(dataset, work / f"{preset}-store-1", config, items=one, progress=False)
    first_s = time.perf_counter() - t0  # includes ray.init: run it once more warm
    t0 = time.perf_counter()
    extract_catalog(dataset, work / f"{preset}-store-1b", config, items=one, progress=False)
    one_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = extract_catalog(dataset, work / f"{preset}-store-n", config, progress=False)
    all_s = time.perf_counter() - t0
    assert summary.extracted == len(videos), summary.describe()
    e2e_vps = (len(videos) - 1) / max(all_s - one_s, 1e-9)
    print(
        f"end to end:      {e2e_vps:8.2f} videos/s marginal "
        f"({all_s:.1f} s for {len(videos)}, {one_s:.1f} s for 1; first run {first_s:.1f} s)"
    )
    ratio = e2e_vps / model_vps
    print(f"RATIO end-to-end / model-only = {ratio:.2f}  (target >= 0.85; {preset}, {family})")
    return ratio


def measure_prompt_bank(preset: str, random_weights: bool, dataset: Path, work: Path) -> None:
    """A bank preset against its first prompt alone: model-only s/video (the same extractor,
    interleaved) and end-to-end marginal s/video through Ray (each into a fresh store; the
    median of PAIRS runs each, after an untimed warm-up run)."""
    import torch

    from featurizer.decode import decode_clip
    from featurizer.extractor import VideoLLMExtractor
    from pipelines.dataset.catalog import scan_videos
    from pipelines.dataset.ingest import read_titles
    from pipelines.extraction.extract import extract_catalog
    from pipelines.extraction.preset import resolve_extractor
    from pipelines.ray_runtime import ensure_ray

    bank = resolve_extractor(preset, random_weights=random_weights)
    if not bank.is_bank:
        return
    single = bank.replace(prompts=())  # the bank's first prompt alone
    prompts = list(bank.prompts)
    videos = list(scan_videos(dataset, write=False).files())
    titles = read_titles(dataset)
    clips = [decode_clip(v.path, bank.frames, bank.resolution) for v in videos]
    print(
        f"[{preset}] prompt bank of {len(prompts)} against its first prompt, {len(videos)} videos"
    )

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    extractor = VideoLLMExtractor(bank)
    model_s = {1: 0.0, len(prompts): 0.0}
    for video, (frames, timing) in zip(videos, clips, strict=True):  # interleaved, pair by pair
        for n in model_s:
            t0 = time.perf_counter()
            extractor.extract_prompts(frames, titles.get(video.item, ""), timing, prompts[:n])
            model_s[n] += time.perf_counter() - t0
    del extractor
    gc.collect()
    torch.set_num_threads(os.cpu_count() or 1)
    model_ratio = model_s[len(prompts)] / model_s[1]
    print(
        f"model only:      {model_s[1] / len(videos):.3f} s/video for 1 prompt, "
        f"{model_s[len(prompts)] / len(videos):.3f} s/video for {len(prompts)}"
    )

    one = [videos[0].item]
    ensure_ray()  # its start-up is not part of either figure
    # untimed: the first run pays the workers' first imports and cold caches
    extract_catalog(dataset, work / f"{preset}-warm-up", single, items=one, progress=False)
    per_video: dict[str, list[float]] = {"1 prompt": [], f"{len(prompts)} prompts": []}
    runs = [("1 prompt", single), (f"{len(prompts)} prompts", bank)]
    orders = [runs if repeat % 2 == 0 else runs[::-1] for repeat in range(PAIRS)]
    for repeat, order in enumerate(orders):  # AB BA AB: drift cancels
        for name, config in order:
            stores = work / f"{preset}-{name}-{repeat}"
            t0 = time.perf_counter()
            extract_catalog(dataset, stores / "one", config, items=one, progress=False)
            one_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            summary = extract_catalog(dataset, stores / "all", config, progress=False)
            all_s = time.perf_counter() - t0
            assert summary.extracted == len(videos), summary.describe()
            per_video[name].append((all_s - one_s) / (len(videos) - 1))
            print(
                f"end to end:      {per_video[name][-1]:.3f} s/video marginal for {name} "
                f"({all_s:.1f} s for {len(videos)}, {one_s:.1f} s for 1)"
            )
    median = {name: statistics.median(values) for name, values in per_video.items()}
    e2e_ratio = median[f"{len(prompts)} prompts"] / median["1 prompt"]
    print(
        f"RATIO {len(prompts)} prompts / 1 prompt, time per video = {e2e_ratio:.2f} end to end, "
        f"{model_ratio:.2f} model only  (target <= 1.6; {preset})"
    )


if __name__ == "__main__":
    main()
