"""Selection on validation against selection on test, on real CIFAR-10: a
small random sweep (8 trials of small_cnn, 3 epochs, on a fixed 10,000-image
subset of the training set so it fits the 2-core VM) selected on
val_accuracy.  Prints the winner's test_accuracy_at_best (the number to quote)
beside the best best_test_accuracy over the trials (what selecting on the
test set would have quoted), and each trial's validation pass as a share of
its training pass.

    python benchmarks/bench_selection.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from common import Timer, cifar10_folder
from tune_pipeline.experiment import load_experiment
from tune_pipeline.metrics import QUOTED, quoted_accuracy

TRIALS = 8


def main():
    data = cifar10_folder()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        space = {
            "method": "random",
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": {
                "model": {"value": "small_cnn"}, "dataset": {"value": "imagefolder"},
                "data_dir": {"value": str(data)}, "epochs": {"value": 3},
                "max_train_images": {"value": 10000},
                "learning_rate": {"distribution": "log_uniform_values", "min": 0.02, "max": 0.8},
                "label_smoothing": {"values": [0.0, 0.1, 0.2]},
                "weight_decay": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 2.0e-3},
            },
            "tune": {"num_samples": TRIALS, "resources": {"cpu": 1}},
        }
        (folder / "selection.yaml").write_text(yaml.safe_dump(space))
        with Timer() as t:
            done = subprocess.run([sys.executable, "-m", "tune_pipeline", "search", "selection.yaml",
                                   "--storage-path", str(folder), "--name", "selection"],
                                  cwd=folder, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stdout + done.stderr)
        exp = load_experiment(folder / "selection")

    ranked = exp.ranked("val_accuracy", "max")
    print(f"{len(exp.trials)} trials in {t.seconds / 60:.1f} min; ranked by best val_accuracy:")
    print(f"{'trial':<12} {'lr':>7} {'ls':>4} {'wd':>8} {'best val':>9} {QUOTED:>22} {'best_test_accuracy':>19} "
          f"{'val pass / train pass':>22}")
    for trial in ranked:
        c, h = trial.config, trial.history
        share = sum(r["val_seconds"] for r in h) / sum(r["epoch_seconds"] for r in h)
        print(f"{trial.trial_id:<12} {c['learning_rate']:7.3f} {c['label_smoothing']:4.1f} {c['weight_decay']:8.5f} "
              f"{trial.best_value('val_accuracy', 'max'):9.2%} {quoted_accuracy(h, 'val_accuracy', 'max'):22.2%} "
              f"{trial.best_value('best_test_accuracy', 'max'):19.2%} {share:22.1%}")
    winner = ranked[0]
    optimistic = max(ranked, key=lambda tr: tr.best_value("best_test_accuracy", "max"))
    print(f"selected on validation: {winner.trial_id}, {QUOTED} "
          f"{quoted_accuracy(winner.history, 'val_accuracy', 'max'):.2%}")
    print(f"selected on test (the old way): {optimistic.trial_id}, best_test_accuracy "
          f"{optimistic.best_value('best_test_accuracy', 'max'):.2%}")


if __name__ == "__main__":
    main()
