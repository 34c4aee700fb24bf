"""What onnxruntime holds in RAM for a model, measured in a fresh process.

``dedup --ram`` (``DedupOptions(measure_ram=True)``) runs it four times: the
original and the rewrite, each with default and recommended session options.
A fresh process per reading costs more than the rest of a dedup, so it runs
only when asked.

RSS growth (read with psutil) from before creating the session to after one
run. glibc keeps freed memory, so the child sets MALLOC_MMAP_THRESHOLD_=65536:
large buffers then go back to the system when freed and readings repeat
within ~1 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
import json, sys, numpy as np, onnxruntime as ort, psutil
def rss():
    return psutil.Process().memory_info().rss
path, config, feeds_path, names = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
data = np.load(feeds_path, allow_pickle=False)
feeds = {name: data[f"arr_{k}"] for k, name in enumerate(names)}
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
    """Bytes of RSS growth for session creation plus one run; RuntimeError (one line) if the probe fails."""
    feeds_path = workdir / "feeds.npz"
    # Positional arrays and a list of names: an input called "file" or
    # "allow_pickle" would otherwise collide with savez's own keywords.
    names = list(feeds)
    np.savez(feeds_path, *[feeds[n] for n in names])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    config = RECOMMENDED_OPTIONS if recommended else {}
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, str(path), json.dumps(config), str(feeds_path), json.dumps(names)], capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        raise RuntimeError("the probe ran past 600 s") from None
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        raise RuntimeError(" ".join(lines[-1].split()) if lines else f"the probe exited with status {out.returncode}")
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError("the probe printed no reading") from None
