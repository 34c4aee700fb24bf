"""What onnxruntime holds in RAM for a model, measured in a fresh process.

RSS growth from before creating the session to after one run. glibc keeps
freed memory, so the child sets MALLOC_MMAP_THRESHOLD_=65536: large buffers
then go back to the system when freed and readings repeat within ~1 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np

__all__ = ["RECOMMENDED_OPTIONS", "measure_ram"]

# Constant folding re-materialises Transpose/Neg/Mul/Gather over a shared
# initializer as a new constant; MatMul/Gemm pre-packing keeps a packed copy
# of each weight beside the original. Both undo the sharing in RAM.
RECOMMENDED_OPTIONS = {
    "session.disable_prepacking": "1",
    "optimization.disable_specified_optimizers": "ConstantFolding",
}

_PROBE = r"""
import json, sys, numpy as np, onnxruntime as ort
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) * 1024
path, config, feeds_path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
feeds = dict(np.load(feeds_path))
options = ort.SessionOptions()
options.log_severity_level = 3
for k, v in config.items():
    options.add_session_config_entry(k, v)
before = rss()
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
session.run(None, feeds)
print(rss() - before)
"""


def measure_ram(path: Path, feeds: dict[str, np.ndarray], recommended: bool, workdir: Path) -> int:
    """Bytes of RSS growth for session creation plus one run."""
    feeds_path = workdir / "feeds.npz"
    # Widened so that mypy does not match the arrays against savez's allow_pickle: bool.
    np.savez(feeds_path, **cast("dict[str, Any]", feeds))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    config = RECOMMENDED_OPTIONS if recommended else {}
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path), json.dumps(config), str(feeds_path)], capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "RAM probe failed")
    return int(out.stdout.strip().splitlines()[-1])
