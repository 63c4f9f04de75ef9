"""The training loop: one run of one config, with no Ray in sight.

`_Runner` holds one run's state (device and precision, the whole dataset
on the device as uint8, model, optimizer, LR schedule, RNG) and its steps
(an epoch: slice batches out of a permutation, augment them on the device,
step an AMP optimizer; an evaluation; a checkpoint); `fit` drives it epoch
by epoch.  A class rather than one straight function, because a run's
state is also saved, loaded from a checkpoint and changed mid-run (below).
The caller sees each epoch through `on_epoch(metrics, make_state)`; `make_state()`
returns a full checkpoint (model, optimizer, scaler, LR schedule, RNG, best
metrics), and `fit(..., resume_state=...)` continues from one exactly.

A run may change its optimizer's values mid-run (pbt.MUTABLE): when the
checkpoint it continues was trained with other values (population-based
training copied another trial's), or when a schedule of values says so
(`fit(..., schedule=...)`, a PBT trial's schedule trained again).  The change
is applied to the running optimizer and recorded in the run's schedule.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from tune_pipeline.augment import ScriptSource, TransformContext, load_transform_script
from tune_pipeline.compile_policy import resolve_compile
from tune_pipeline.data import Dataset, load_for_config, with_validation
from tune_pipeline.errors import RunFailed
from tune_pipeline.internals import cpu_has_native_bf16
from tune_pipeline.metrics import RUNNING_BEST, best_of, goal
from tune_pipeline.models import create_model
from tune_pipeline.pbt import SCHEDULE_KEY, record_change

CHECKPOINT_FORMAT = 1
NAN_CHECK_EVERY = 16  # steps between reads of the running loss: each read syncs the GPU


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunFailed(f"device {name!r} asked for, but no CUDA GPU is visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RunFailed(f"device {name!r} asked for, but MPS is not available")
    return device


def cpu_has_fast_bf16() -> bool:
    """bf16 pays on a CPU only with native bf16 instructions (AVX512-BF16 or
    AMX).  Measured on this project's 2-core AVX-512 machine without them:
    small_cnn trained at 160 images/s in bf16 against 440 in fp32."""
    return cpu_has_native_bf16()


def amp_policy(device: torch.device, enabled: bool, dtype_name: str):
    """(autocast dtype or None, use GradScaler).  fp16 needs the scaler to
    keep small gradients from flushing to zero; bf16 has fp32's exponent range."""
    if not enabled:
        return None, False
    if dtype_name == "auto":
        if device.type in ("cuda", "mps"):
            dtype = torch.float16
        elif device.type == "cpu" and cpu_has_fast_bf16():
            dtype = torch.bfloat16
        else:
            return None, False
    else:
        dtype = getattr(torch, dtype_name)
    if device.type == "cpu" and dtype == torch.float16:
        dtype = torch.bfloat16  # CPU autocast has no fast fp16 path
    return dtype, dtype == torch.float16 and device.type == "cuda"


def build_optimizer(model: nn.Module, config: dict) -> torch.optim.Optimizer:
    lr, wd, momentum = config["learning_rate"], config["weight_decay"], config["momentum"]
    name = config["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                               nesterov=config["nesterov"] and momentum > 0, weight_decay=wd)
    # For Adam, `momentum` is beta1, so a sweep over momentum means the same knob.
    betas = (momentum, 0.999)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def build_scheduler(optimizer, config: dict, steps_per_epoch: int):
    """Returns (scheduler, steps per call): schedules advance every batch except
    ReduceLROnPlateau, which reads the validation loss (the test loss when
    no validation split is held out) once an epoch."""
    kind = config["lr_scheduler"]
    total = config["epochs"] * steps_per_epoch
    warmup = int(round(config["warmup_epochs"] * steps_per_epoch))
    if kind == "onecycle":
        pct = config["warmup_epochs"] / config["epochs"] if config["warmup_epochs"] else 0.25
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config["learning_rate"], total_steps=total + 1,  # +1: the last step stays in range
            pct_start=min(max(pct, 1.0 / total), 0.99), anneal_strategy="linear",
            cycle_momentum=False), "step"
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config["lr_gamma"], patience=config["lr_patience"]), "epoch"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if kind == "step":  # StepLR over epochs, expressed per batch
            return config["lr_gamma"] ** ((step // steps_per_epoch) // config["lr_step_size"])
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "step"


def batches(n: int, batch_size: int, order: torch.Tensor | None = None):
    """Index slices covering all n items; the last batch may be smaller."""
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield order[start:stop] if order is not None else slice(start, stop)


class _Runner:
    """Everything one run holds; `fit` below is the whole public surface."""

    def __init__(self, config: dict, dataset: Dataset | None, script: ScriptSource | None = None,
                 schedule: list[dict] | None = None):
        self.config = config
        self.device = resolve_device(config["device"])
        torch.manual_seed(config["seed"])  # model init
        if self.device.type == "cpu":
            # Values below 1e-38 (denormals) take a slow microcode path on x86: a
            # resnet18 epoch on 512 CIFAR airplanes ran at 5 images/s instead of 30
            # once gradients shrank into that range.  Flushing them to zero costs
            # no accuracy.
            torch.set_flush_denormal(True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if dataset is None:
            data = load_for_config(config)
        else:  # a sweep's data arrives split; a caller's own dataset is split here
            data = with_validation(dataset, config["val_fraction"], config["val_seed"])
        data = data.limit(config["max_train_images"], config["max_test_images"])
        self.classes, self.mean, self.std = list(data.classes), data.mean, data.std
        self.num_classes = data.num_classes
        self.train_x = data.train_images.to(self.device)
        self.train_y = data.train_labels.to(self.device)
        self.eval_sets = {"test": (data.test_images.to(self.device), data.test_labels.to(self.device))}
        if data.val_labels is not None:
            self.eval_sets["val"] = (data.val_images.to(self.device), data.val_labels.to(self.device))
        # The loss that steers plateau: never the test set's when a validation split exists.
        self.watched_loss = "val_loss" if "val" in self.eval_sets else "test_loss"
        # A sweep's trial brings the text its driver read; `tune train` reads the file.
        self.script = load_transform_script(config["runtime_transform_script"], source=script)
        self.generator = torch.Generator(device=self.device).manual_seed(config["seed"])
        self.ctx = TransformContext(
            mean=torch.tensor(data.mean, device=self.device),
            std=torch.tensor(data.std, device=self.device), generator=self.generator)
        self.memory_format = torch.channels_last if config["channels_last"] else torch.contiguous_format
        self.model = create_model(config["model"], num_classes=self.num_classes).to(
            self.device, memory_format=self.memory_format)
        # A sweep's trial arrives with `compile` resolved (trainable.train_trial).
        compiled = resolve_compile(config["compile"], self.device)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.amp_dtype, use_scaler = amp_policy(self.device, config["amp"], config["amp_dtype"])
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.optimizer = build_optimizer(self.model, config)
        self.steps_per_epoch = math.ceil(len(self.train_y) / config["batch_size"])
        self.scheduler, self.schedule_unit = build_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.epoch = 0
        self.best = {"best_train_accuracy": 0.0, "best_test_accuracy": 0.0,
                     "best_loss": math.inf, "best_test_loss": math.inf}
        if "val" in self.eval_sets:
            self.best.update(best_val_accuracy=0.0, best_val_loss=math.inf)
        self.history: list[dict] = []
        self.schedule: list[dict] = [dict(s) for s in schedule or []]  # pbt.record_change's form

    def retune(self, old: dict) -> None:
        """Give the running optimizer this run's learning_rate, momentum and
        weight_decay, where it holds `old`'s.  The learning rate rescales the
        LR schedule from here on (every LR the schedule keeps, scaled by
        new/old); label_smoothing and grad_clip are read at each step."""
        ratio = self.config["learning_rate"] / old["learning_rate"]
        for group in self.optimizer.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):  # one-cycle keeps its peak and floor here
                if key in group:
                    group[key] *= ratio
            group["weight_decay"] = self.config["weight_decay"]
            if "betas" in group:
                group["betas"] = (self.config["momentum"], group["betas"][1])
            elif "momentum" in group:
                group["momentum"] = self.config["momentum"]
        if hasattr(self.scheduler, "base_lrs"):  # what step, cosine and warmup multiply
            self.scheduler.base_lrs = [lr * ratio for lr in self.scheduler.base_lrs]

    def follow_schedule(self) -> None:
        """Before an epoch: take the values the schedule gives from this epoch on."""
        for segment in self.schedule:
            if segment["epoch"] == self.epoch and self.epoch > 0:
                values = {k: v for k, v in segment.items() if k != "epoch"}
                if any(self.config.get(k) != v for k, v in values.items()):
                    old, self.config = self.config, {**self.config, **values}
                    self.retune(old)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, images: torch.Tensor, transform) -> torch.Tensor:
        x = transform(images, self.ctx)
        return x.contiguous(memory_format=self.memory_format)

    def train_epoch(self, on_batch) -> dict:
        cfg = self.config
        self.model.train()
        self.ctx.epoch = self.epoch
        n = len(self.train_y)
        order = torch.randperm(n, device=self.device, generator=self.generator)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        start = time.perf_counter()
        for step, idx in enumerate(batches(n, cfg["batch_size"], order)):
            x = self.prepare(self.train_x[idx], self.script.train_transform)
            y = self.train_y[idx]
            with self.autocast():
                logits = self.forward(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg["label_smoothing"])
            self.scaler.scale(loss).backward()
            if cfg["grad_clip"] > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg["grad_clip"])
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.schedule_unit == "step":
                self.scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            if step % NAN_CHECK_EVERY == NAN_CHECK_EVERY - 1 or step == self.steps_per_epoch - 1:
                if not torch.isfinite(loss_sum):
                    raise RunFailed(
                        f"loss is {loss_sum.item()} at epoch {self.epoch + 1}, step {step + 1}: "
                        f"the run diverged (try a lower learning_rate than {cfg['learning_rate']})")
            if on_batch is not None:
                on_batch(step + 1, self.steps_per_epoch)
        train_loss = loss_sum.item() / n  # .item() waits for the GPU: the timing below is honest
        seconds = time.perf_counter() - start
        return {"train_loss": train_loss, "train_accuracy": correct.item() / n,
                "images_per_second": n / seconds, "epoch_seconds": seconds}

    @torch.no_grad()
    def evaluate(self, split: str = "test") -> dict:
        """{split}_loss and {split}_accuracy on the validation or the test set."""
        self.model.eval()
        images, labels = self.eval_sets[split]
        n = len(labels)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        eval_batch = max(self.config["batch_size"], 512)  # no activations kept: bigger is faster
        for idx in batches(n, eval_batch):
            x = self.prepare(images[idx], self.script.test_transform)
            y = labels[idx]
            with self.autocast():
                logits = self.forward(x).float()
                if self.config["test_time_flip"]:
                    logits = logits + self.forward(x.flip(3)).float()
                    logits = logits / 2
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        return {f"{split}_loss": loss_sum.item() / n, f"{split}_accuracy": correct.item() / n}

    def run_epoch(self, on_batch) -> dict:
        metrics = self.train_epoch(on_batch)
        if "val" in self.eval_sets:
            start = time.perf_counter()
            metrics.update(self.evaluate("val"))  # .item() inside: the time is honest
            metrics["val_seconds"] = time.perf_counter() - start
        metrics.update(self.evaluate("test"))
        self.epoch += 1
        if self.schedule_unit == "epoch":
            self.scheduler.step(metrics[self.watched_loss])
        for key in ("train_loss", self.watched_loss, "test_loss"):
            if not math.isfinite(metrics[key]):
                raise RunFailed(f"{key} is {metrics[key]} at epoch {self.epoch}: the run diverged")
        for name, best in RUNNING_BEST.items():
            if name in metrics:
                self.best[best] = best_of((self.best[best], metrics[name]), goal(name))
        metrics.update(self.best)
        metrics["epoch"] = self.epoch
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.schedule:
            metrics[SCHEDULE_KEY] = json.dumps(self.schedule)
        self.history.append(dict(metrics))
        return metrics

    def state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "config": dict(self.config), "epoch": self.epoch,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(), "best": dict(self.best),
            "history": [dict(h) for h in self.history], "schedule": [dict(s) for s in self.schedule],
        }

    def weights(self) -> dict:
        """What a user needs to run the trained model: see run_output.load_model."""
        return {"format": CHECKPOINT_FORMAT, "model": self.config["model"], "classes": self.classes,
                "mean": list(self.mean), "std": list(self.std), "input_size": self.train_x.shape[-1],
                "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"].cpu() if hasattr(state["generator"], "cpu")
                                 else state["generator"])
        self.epoch = state["epoch"]
        self.best = dict(state["best"])
        self.history = [dict(h) for h in state["history"]]
        self.schedule = [dict(s) for s in state.get("schedule", [])] or self.schedule
        # A checkpoint trained with other values (PBT copied another trial's):
        # the optimizer now holds those; this run's values take over from here.
        old = state["config"]
        changed = record_change(self.schedule, self.epoch, old, self.config)
        if changed is not self.schedule:
            self.schedule = changed
            self.retune(old)


def fit(config: dict, *, dataset: Dataset | None = None, resume_state: dict | None = None,
        on_epoch: Callable[[dict, Callable[[], dict]], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None, script: ScriptSource | None = None,
        schedule: list[dict] | None = None) -> dict:
    """Train `config` (a validated trial config) to its last epoch.  `script`:
    the transform script's text as the sweep's driver read it; without it the
    script the config names is read now.  With `schedule` (pbt.record_change's
    form, starting from `config`'s values), change the values at the epochs it
    names.

    Returns {"history": [metrics per epoch], "best": best metrics, "final": last metrics,
    "weights": the final model (`_Runner.weights`)}.
    Raises RunFailed when the loss diverges or the device runs out of memory.
    """
    try:
        runner = _Runner(config, dataset, script, schedule)
        if resume_state is not None:
            runner.load_state(resume_state)
        while runner.epoch < config["epochs"]:
            runner.follow_schedule()
            metrics = runner.run_epoch(on_batch)
            if on_epoch is not None:
                on_epoch(metrics, runner.state)
    except torch.OutOfMemoryError as exc:
        raise RunFailed(f"out of memory on {config['device']}: {str(exc).splitlines()[0]} "
                        f"(try a smaller batch_size than {config['batch_size']})") from None
    final = runner.history[-1] if runner.history else {}
    return {"history": runner.history, "best": dict(runner.best), "final": final,
            "weights": runner.weights()}
