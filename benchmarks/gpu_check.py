"""The GPU check: one command that measures, on one GPU in one run,

1. training images/s of resnet18, preact_resnet18 and vgg16 with our loop
   against the PIL DataLoader baseline (8 workers), and the ratio;
2. for resnet18 (small_cnn with --smoke): AMP fp16 / bf16 / off, channels_last on / off, and
   torch.compile on / off (compile time reported apart);
3. packing: aggregate images/s of 1, 2, 4 and 8 concurrent small_cnn trials
   through `tune search --gpus-per-trial 1/k`, and the speedup over one;
4. time to accuracy: the fast recipe of search_spaces/fast_cifar10.yaml on
   CIFAR-10, the wall time until 94% test accuracy (or what it reached).

    python benchmarks/gpu_check.py              # on a GPU machine, ~5 minutes on an H100
    python benchmarks/gpu_check.py --smoke      # tiny sizes, end to end on a CPU in minutes

Data: the CIFAR-10 JPEG folder (.data/cifar10, unpacked from
.data/cifar10-jpg.tar.gz or ../shared/data/cifar10-jpg.tar.gz).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import torch
import yaml

from common import ROOT, Timer, cifar10_folder
from tune_pipeline.config import validate_config
from tune_pipeline.data import load_imagefolder
from tune_pipeline.train import fit, resolve_device

RESULTS: dict = {}


def section(title: str):
    print(f"\n== {title}", flush=True)


def run_fit(data, device: str, **overrides) -> list[dict]:
    cfg = validate_config({"dataset": "imagefolder", "device": device, "seed": 0, **overrides})
    return fit(cfg, dataset=data)["history"]


def steady_rate(history: list[dict]) -> float:
    """Images/s of the last epoch: the first pays for cudnn autotuning and compilation."""
    return history[-1]["images_per_second"]


def baseline_rate(folder: Path, model_name: str, device: torch.device, batches: int, workers: int,
                  batch_size: int) -> float:
    """The original pipeline: ImageFolder + per-image PIL transforms in DataLoader
    workers, fp32, NCHW."""
    import torch.nn.functional as F
    from torchvision import datasets, transforms as T

    from tune_pipeline.models import create_model

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder / "train"), transform=tf),
                                         batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=True)
    model = create_model(model_name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    it = iter(loader)

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for x, y in itertools.islice(it, 3):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    with Timer() as t:
        for x, y in itertools.islice(it, batches):
            step(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
    it._shutdown_workers()
    return batches * batch_size / t.seconds


def models_vs_baseline(folder, data, device, args):
    section("1. our loop vs the PIL DataLoader baseline (images/s, training)")
    for name in ("resnet18", "preact_resnet18", "vgg16"):
        ours = steady_rate(run_fit(data, args.device, model=name, epochs=2, batch_size=args.batch,
                                   max_train_images=args.train_images, max_test_images=args.test_images))
        base = baseline_rate(folder, name, device, args.baseline_batches, args.workers, args.batch)
        RESULTS.setdefault("models", {})[name] = {"ours": ours, "baseline": base, "ratio": ours / base}
        print(f"{name:<16} ours {ours:9.0f}   baseline ({args.workers} workers) {base:8.0f}   "
              f"ratio {ours / base:5.1f}x", flush=True)


def resnet_variants(data, device, args):
    section(f"2. {args.variant_model}: precision, memory layout, torch.compile (images/s, training)")
    variants = {
        "amp fp16, channels_last": dict(amp_dtype="float16"),
        "amp bf16, channels_last": dict(amp_dtype="bfloat16"),
        "amp off,  channels_last": dict(amp=False),
        "amp auto, NCHW": dict(channels_last=False),
        "amp auto, channels_last, compile": dict(compile=True),
    }
    for label, extra in variants.items():
        history = run_fit(data, args.device, model=args.variant_model, epochs=2, batch_size=args.batch,
                          max_train_images=args.train_images, max_test_images=args.test_images, **extra)
        rate = steady_rate(history)
        first, last = history[0]["epoch_seconds"], history[-1]["epoch_seconds"]
        compile_note = f"   compile ~{max(first - last, 0):.1f} s (first epoch minus second)" if extra.get("compile") else ""
        RESULTS.setdefault(f"{args.variant_model}_variants", {})[label] = {"images_per_second": rate,
                                                              "first_epoch_s": first, "second_epoch_s": last}
        print(f"{label:<36} {rate:9.0f}{compile_note}", flush=True)


def packing(args):
    section("3. packed trials on one device: aggregate images/s of k concurrent small_cnn trials")
    base_rate = None
    cores = os.cpu_count() or 1
    for k in args.pack:
        with tempfile.TemporaryDirectory() as folder:
            space = {"method": "grid", "parameters": {
                "model": {"value": "small_cnn"}, "dataset": {"value": "imagefolder"},
                "data_dir": {"value": str(cifar10_folder())}, "device": {"value": args.device},
                "epochs": {"value": 2}, "batch_size": {"value": args.batch},
                "max_train_images": {"value": args.train_images}, "max_test_images": {"value": args.test_images},
                "seed": {"values": list(range(k))}}}
            path = Path(folder) / "pack.yaml"
            path.write_text(yaml.safe_dump(space))
            gpu = ["--gpus-per-trial", f"{1 / k:.4f}"] if args.device != "cpu" else []
            cmd = [sys.executable, "-m", "tune_pipeline", "search", str(path), "--storage-path", folder,
                   "--name", f"pack{k}", "--cpus-per-trial", str(max(1, cores // k)), *gpu]
            with Timer() as t:
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(f"k={k}: tune search failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
                continue
            rows = [json.loads(line) for f in Path(folder, f"pack{k}").glob("trial_*/result.json")
                    for line in f.read_text().splitlines()]
            last = [r["images_per_second"] for r in rows if r["epoch"] == 2]
            aggregate = sum(last)
            base_rate = base_rate or aggregate
            RESULTS.setdefault("packing", {})[k] = {"aggregate_images_per_second": aggregate,
                                                    "speedup": aggregate / base_rate, "wall_s": t.seconds}
            print(f"k={k}: aggregate {aggregate:9.0f} images/s   speedup {aggregate / base_rate:4.2f}x   "
                  f"(tune search wall {t.seconds:.0f} s)", flush=True)


def time_to_accuracy(data, args):
    section("4. time to accuracy: the fast_cifar10 recipe")
    recipe = yaml.safe_load((ROOT / "tune_pipeline" / "search_spaces" / "fast_cifar10.yaml").read_text())["parameters"]
    fixed = {k: (v["value"] if "value" in v else v["values"][0]) for k, v in recipe.items()
             if k not in ("dataset", "data_dir")}
    fixed.update({"epochs": args.recipe_epochs, "learning_rate": 0.4})  # the script: a stock one, by name
    if args.smoke:
        fixed.update({"max_train_images": args.train_images, "max_test_images": args.test_images,
                      "batch_size": args.batch, "amp_dtype": "auto"})
    elapsed, reached = 0.0, None
    with Timer() as wall:
        history = run_fit(data, args.device, **fixed)
    for m in history:
        elapsed += m["epoch_seconds"]
        if reached is None and m["test_accuracy"] >= 0.94:
            reached = (m["epoch"], elapsed)
    best = max(m["test_accuracy"] for m in history)
    RESULTS["time_to_accuracy"] = {"recipe": fixed, "best_test_accuracy": best, "train_seconds": elapsed,
                                   "wall_seconds": wall.seconds, "reached_94": reached}
    if reached:
        print(f"94% at epoch {reached[0]} after {reached[1]:.1f} s of training "
              f"(wall {wall.seconds:.1f} s with evaluation); best {best:.2%}")
    else:
        print(f"best {best:.2%} in {len(history)} epochs, {elapsed:.1f} s of training (wall {wall.seconds:.1f} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs on a CPU in minutes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = resolve_device("auto")
    if args.smoke:
        # resnet18 runs at ~30 images/s on 2 cores and compiles for minutes:
        # the smoke run proves every step works, on small_cnn where it can.
        args.device, args.batch, args.train_images, args.test_images = "auto", 64, 256, 128
        args.baseline_batches, args.workers, args.pack, args.recipe_epochs = 4, 2, (1, 2), 1
        args.variant_model = "small_cnn"
    else:
        args.device, args.batch, args.train_images, args.test_images = "auto", 512, 25600, 2048
        args.baseline_batches, args.workers, args.pack, args.recipe_epochs = 30, 8, (1, 2, 4, 8), 16
        args.variant_model = "resnet18"
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {name}; torch {torch.__version__}; smoke={args.smoke}", flush=True)
    RESULTS["device"] = name
    folder = cifar10_folder()
    with Timer() as t:
        data = load_imagefolder(folder)
    print(f"CIFAR-10 image folder loaded in {t.seconds:.1f} s (cache hit {data.extra['cache_hit']})")
    for step in (lambda: models_vs_baseline(folder, data, device, args), lambda: resnet_variants(data, device, args),
                 lambda: packing(args), lambda: time_to_accuracy(data, args)):
        try:
            step()
        except Exception:  # one broken section must not cost the others' figures
            traceback.print_exc()
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=2, default=str))


if __name__ == "__main__":
    main()
