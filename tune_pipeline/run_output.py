"""What `tune train` leaves on disk for one run: output/<name>/ holding the
resolved config, per-epoch metrics as CSV, a summary JSON, the last
checkpoint and the final model's weights.  Written epoch by epoch so a killed
run keeps what it had.  `load_model` is the two-line way back to a model."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import torch
import yaml

from tune_pipeline.metrics import (ORIGINAL_COLUMNS, QUOTED, REPORTED_METRICS, VALIDATION_COLUMNS, default_metric,
                                   quoted_accuracy, selection_note)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"

# Every per-epoch metric, epoch first; a run without a validation split leaves val_* empty.
METRIC_COLUMNS = ["epoch"] + [m for m in REPORTED_METRICS if m != "epoch"]


def atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        write(tmp)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk must not keep half a checkpoint too
        raise


def _serialized(state: dict) -> bytes:
    """torch.save into memory first: on a full disk a plain file write says
    "No space left on device" where torch.save says "unexpected pos"."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_model(path: str | Path, device: str = "cpu") -> torch.nn.Module:
    """The model saved as model.pt, in eval mode.  It takes float images
    normalized by `model.mean` and `model.std` (per channel, in [0, 1] units)
    of `model.input_size` pixels; `model.classes` names its outputs."""
    from tune_pipeline.models import create_model

    saved = torch.load(path, map_location=device, weights_only=True)
    model = create_model(saved["model"], num_classes=len(saved["classes"]))
    model.load_state_dict(saved["state_dict"])
    model.classes, model.mean, model.std = saved["classes"], tuple(saved["mean"]), tuple(saved["std"])
    model.input_size = saved["input_size"]
    return model.to(device).eval()


class RunDirectory:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    def has_run(self) -> bool:
        return self.checkpoint.exists() or (self.path / METRICS_FILE).exists()

    def clear(self) -> None:
        """--overwrite: the old run's files go before the new run writes any, so
        an interrupted new run never sits beside the old one's summary."""
        for name in (SUMMARY_FILE, CHECKPOINT_FILE, METRICS_FILE, CONFIG_FILE):
            (self.path / name).unlink(missing_ok=True)

    def partial_result(self) -> dict:
        """What the epochs recorded so far add up to, for a run that stopped early."""
        try:
            with open(self.path / METRICS_FILE, newline="") as f:
                text_rows = list(csv.DictReader(f))
        except OSError:
            text_rows = []
        # The CSV holds every column as text, empty where a run had no value (no
        # validation split): numbers back, empty cells dropped, as fit() reports.
        rows = []
        for text_row in text_rows:
            row = {}
            for key, cell in text_row.items():
                try:
                    row[key] = float(cell)
                except (TypeError, ValueError):
                    continue
            rows.append(row)
        best = {k: rows[-1][k] for k in (*ORIGINAL_COLUMNS, *VALIDATION_COLUMNS) if rows and k in rows[-1]}
        return {"history": rows, "best": best, "final": {}}

    def start(self, config: dict, history: list[dict]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        with open(self.path / METRICS_FILE, "w", newline="") as f:
            writer = csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)

    def record_epoch(self, metrics: dict, state: dict) -> None:
        with open(self.path / METRICS_FILE, "a", newline="") as f:
            csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore").writerow(metrics)
        atomic_write_bytes(self.checkpoint, lambda tmp: tmp.write_bytes(_serialized(state)))

    def finish(self, result: dict, status: str = "finished", error: str | None = None,
               source: str | None = None, val_fraction: float = 0.0) -> dict:
        """summary.json; with it, the final model's weights (not a best epoch's:
        choosing an epoch by its test score would make the test number optimistic).
        `val_fraction`: the run's, for a run that stopped before its first epoch
        (its epochs say whether it held out validation data, when it has some)."""
        history = result.get("history", [])
        held_out = any("val_accuracy" in h for h in history) if history else val_fraction > 0
        metric, mode = default_metric(held_out)
        summary = {"status": status, "epochs": len(history), **result.get("best", {}),
                   "selection_metric": metric, "selection": selection_note(metric),
                   QUOTED: quoted_accuracy(history, metric, mode), "final": result.get("final", {})}
        if source:
            summary["from"] = source
        if error:
            summary["error"] = error
        # Atomic: a kill while writing must not leave half a summary.
        atomic_write_bytes(self.path / SUMMARY_FILE, lambda tmp: tmp.write_text(
            json.dumps(summary, indent=2, default=float) + "\n"))
        if result.get("weights") is not None:
            atomic_write_bytes(self.model_file, lambda tmp: torch.save(result["weights"], tmp))
        return summary

    def load_checkpoint(self) -> dict:
        return torch.load(self.checkpoint, map_location="cpu", weights_only=False)
