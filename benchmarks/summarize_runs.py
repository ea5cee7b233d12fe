"""Print one line per run directory under the given folders: status, headline accuracy and the timing fields.

Usage: python benchmarks/summarize_runs.py RUNS_DIR [RUNS_DIR ...]   (used by benchmarks/gpu_check.sh)
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

FIELDS = ("test_acc", "test_acc_tta", "linear_acc", "knn_acc", "rotation_test_acc", "best_val_acc", "epochs",
          "batch_size", "peak_lr", "train_time_s", "images_per_s", "startup_s", "data_load_s", "first_epoch_s",
          "median_epoch_s", "first_epoch_ratio", "first_epoch_excess_s", "compile", "embed_time_s",
          "embed_train_val_s", "embed_test_s", "head_init_s", "peak_memory_mb", "startup_parts_s",
          "first_epoch_steps_s")


def main(dirs: list[str]) -> None:
    for d in dirs:
        for summary in sorted(Path(d).glob("**/summary.json")):
            s = json.loads(summary.read_text())
            parts = [f"{summary.parent.name}", s.get("status", "?")]
            for k in FIELDS:
                v = s.get(k)
                if isinstance(v, float):
                    parts.append(f"{k}={100 * v:.2f}%" if k.endswith("acc") or "_acc_" in k else f"{k}={v:.4g}")
                elif isinstance(v, dict):
                    parts.append(f"{k}=" + ",".join(f"{a}:{b}" for a, b in v.items()))
                elif v is not None:
                    parts.append(f"{k}={v}")
            if s.get("started") and s.get("finished"):  # the whole run, whole seconds (the stamps' resolution)
                run_s = datetime.fromisoformat(s["finished"]) - datetime.fromisoformat(s["started"])
                parts.append(f"run_s={run_s.total_seconds():.0f}")
            if s.get("error"):
                parts.append(f"error={s['error'][:160]}")
            print(" ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1:])
