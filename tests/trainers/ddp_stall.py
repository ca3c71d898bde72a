"""Run under torchrun by test_ddp: rank 1 stalls past dist_timeout_s; rank 0 must fail, not wait forever."""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trainers.config import TrainConfig  # noqa: E402
from trainers.distributed import any_rank, explain_collective_failures, make_accelerator  # noqa: E402

if __name__ == "__main__":
    cfg = TrainConfig(dist_timeout_s=int(sys.argv[1]))
    accelerator = make_accelerator(cfg, cpu=True)
    with explain_collective_failures(accelerator, cfg.dist_timeout_s):
        if accelerator.process_index == 1:
            time.sleep(120)
        any_rank(accelerator, False)
