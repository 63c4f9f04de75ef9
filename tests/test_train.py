import math

import pytest
import torch

from tune_pipeline.config import LR_SCHEDULERS, OPTIMIZERS
from tune_pipeline.errors import RunFailed
from tune_pipeline.metrics import TIMING_METRICS
from tune_pipeline.train import amp_policy, fit

from conftest import TRANSFORM_SCRIPTS, digits_config


def config(**overrides):
    return digits_config(320, 128, **overrides)


def test_two_epochs_on_digits_learn(digits):
    result = fit(config(max_train_images=0, max_test_images=0), dataset=digits)
    history = result["history"]
    assert [m["epoch"] for m in history] == [1, 2]
    # chance is 10%; two epochs of a working loop land far above it
    assert history[-1]["test_accuracy"] > 0.6
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for m in history:
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "best_train_accuracy",
                    "best_test_accuracy", "best_loss", "best_test_loss", "lr", "epoch", "images_per_second"):
            assert key in m and math.isfinite(m[key])
    assert result["best"]["best_test_accuracy"] == max(m["test_accuracy"] for m in history)
    assert result["best"]["best_loss"] == min(m["train_loss"] for m in history)


def test_same_seed_same_numbers(digits):
    a = fit(config(epochs=1), dataset=digits)["history"]
    b = fit(config(epochs=1), dataset=digits)["history"]
    c = fit(config(epochs=1, seed=1), dataset=digits)["history"]
    strip = lambda h: [{k: v for k, v in m.items() if k not in TIMING_METRICS} for m in h]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


@pytest.mark.parametrize("scheduler", ["step", "plateau", "onecycle"])
def test_resume_equals_an_uninterrupted_run(digits, scheduler):
    cfg = config(epochs=3, lr_scheduler=scheduler, runtime_transform_script=str(TRANSFORM_SCRIPTS[0]))
    straight = fit(cfg, dataset=digits)["history"]

    saved = {}

    def stop_after_first(metrics, make_state):
        if metrics["epoch"] == 1:
            saved["state"] = make_state()
            raise KeyboardInterrupt  # the run dies here

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, dataset=digits, on_epoch=stop_after_first)
    state = saved["state"]
    resumed = fit(cfg, dataset=digits, resume_state=state)["history"]
    strip = lambda h: [{k: v for k, v in m.items() if k not in TIMING_METRICS} for m in h]
    assert strip(resumed) == strip(straight)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scheduler", LR_SCHEDULERS)
def test_every_optimizer_and_schedule_runs(digits, optimizer, scheduler):
    lr = 0.05 if optimizer == "sgd" else 0.003
    result = fit(config(optimizer=optimizer, lr_scheduler=scheduler, learning_rate=lr, warmup_epochs=0.5,
                        max_train_images=128, max_test_images=64), dataset=digits)
    lrs = [m["lr"] for m in result["history"]]
    assert all(0 <= x <= lr * 1.0001 for x in lrs)
    if scheduler in ("cosine", "onecycle"):
        assert lrs[-1] < lr / 10  # annealed to near zero at the end
    if scheduler == "none":
        assert lrs[-1] == pytest.approx(lr)


def test_optional_features_run(digits):
    result = fit(config(epochs=1, label_smoothing=0.1, grad_clip=1.0, test_time_flip=True, amp=False,
                        channels_last=False, nesterov=True), dataset=digits)
    assert math.isfinite(result["final"]["test_loss"])


def test_diverging_run_fails_with_a_reason(digits):
    with pytest.raises(RunFailed, match="diverged"):
        fit(config(learning_rate=1.0e12, lr_scheduler="none", epochs=2), dataset=digits)


def test_amp_policy():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_policy(cuda, True, "auto") == (torch.float16, True)
    assert amp_policy(cuda, True, "bfloat16") == (torch.bfloat16, False)
    assert amp_policy(cuda, False, "auto") == (None, False)
    dtype, scaler = amp_policy(cpu, True, "auto")
    assert dtype in (None, torch.bfloat16) and scaler is False
    assert amp_policy(cpu, True, "float16") == (torch.bfloat16, False)  # no fp16 autocast on CPU


def test_bf16_autocast_runs_on_cpu(digits):
    result = fit(config(epochs=1, amp_dtype="bfloat16", max_train_images=128), dataset=digits)
    assert math.isfinite(result["final"]["train_loss"])
