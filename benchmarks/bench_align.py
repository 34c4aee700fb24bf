"""Alignment before tying: weight matching on digits MLPs trained from different seeds.

    python benchmarks/bench_align.py

(a) Two DigitsMLPs trained from different initialisations on the same digits
(the fixtures' recipe): the trunk's relative gap before and after alignment,
by coordinate descent from several starts and by a single alternating pass.
(b) The fixture pair's two input distributions (A: digits, B: shifted, lower
contrast, noisy), each model from its own initialisation: the gap before and
after alignment, and `tie` of the trunk (features.*, about half the bytes)
with and without --align: accuracy lost, and the epoch and lambda at which
every group's gap first fell below --target-gap.

Writes reports/align.md and reports/align.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (11, 12)  # the two initialisations (the fixtures' pair shares one; here they differ)
TIE_RUNS = ({"lam": None, "epochs": 30}, {"lam": 10.0, "epochs": 15})


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from fixtures.architectures import DigitsMLP
    from fixtures.make_fixtures import digits_splits, train_classifier
    from sharescan.align import AlignOptions, align_modules
    from sharescan.tying.run import TieOptions, tie

    torch.set_num_threads(1)
    start = time.perf_counter()
    data = digits_splits()

    def trained(seed: int, split: str) -> DigitsMLP:
        torch.manual_seed(seed)
        m = DigitsMLP()
        train_classifier(m, data[f"x_train_{split}"], data[f"y_train_{split}"], (64,), seed=seed)
        return m

    def gaps(a: DigitsMLP, b: DigitsMLP) -> dict:
        full, single = align_modules(a, b, AlignOptions(starts=8)), align_modules(a, b, AlignOptions(one_pass=True))
        return {
            "trunk_gap_before": full.trunk_gap_before, "trunk_gap_one_pass": single.trunk_gap_after, "trunk_gap_coordinate_descent": full.trunk_gap_after,
            "passes": full.passes, "starts": full.starts, "units_moved": full.units_moved, "max_abs_output_diff": full.max_abs_output_diff,
            "layers": [dict(g.__dict__) for g in full.layers],
        }

    same = gaps(trained(SEEDS[0], "a"), trained(SEEDS[1], "a"))
    print("(a)", {k: v for k, v in same.items() if k != "layers"}, flush=True)
    a, b = trained(SEEDS[0], "a"), trained(SEEDS[1], "b")
    pair = gaps(a, b)
    print("(b)", {k: v for k, v in pair.items() if k != "layers"}, flush=True)
    ties = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = [f"{tmp}/a.pt", f"{tmp}/b.pt"]
        torch.save(a.state_dict(), paths[0])
        torch.save(b.state_dict(), paths[1])
        for run in TIE_RUNS:
            for aligned in (False, True):
                options = TieOptions(groups="A:features.* = B:features.*", task="fixtures.digits_task:pair", arch="fixtures.architectures:DigitsMLP",
                                     lam=run["lam"], epochs=run["epochs"], align=aligned, force=True)
                r = tie(paths, f"{tmp}/tied.pt", options)
                ties.append(_tie_row(r, run, aligned))
                print(ties[-1], flush=True)
    result = {"seeds": SEEDS, "same_data": same, "two_distributions": pair, "tie": ties, "seconds": time.perf_counter() - start, "torch_threads": 1}
    (ROOT / "reports/align.json").write_text(json.dumps(result, indent=1) + "\n")
    (ROOT / "reports/align.md").write_text(render(result))
    print(render(result))


def _tie_row(r, run: dict, aligned: bool) -> dict:
    target = 1e-3
    worst = [max(g.gap_per_epoch[e] for g in r.groups) for e in range(len(r.lambdas))]
    below = next((e for e, g in enumerate(worst) if g <= target), None)
    key, drop = r.worst_drop
    return {
        "align": aligned, "lambda": "auto" if run["lam"] is None else run["lam"], "epochs": run["epochs"],
        "gap_before_tuning": max(g.gap_before for g in r.groups), "gap_at_sharing": max(g.gap_at_sharing for g in r.groups),
        "epoch_below_target": None if below is None else below + 1, "lambda_at_target": None if below is None else r.lambdas[below],
        "metric_before": r.metric_before, "metric_final": r.metric_final, "worst_drop": drop, "worst_model": key,
        "bytes_before": r.bytes_before, "bytes_after": r.bytes_after, "notes": list(r.notes),
    }


def _pct(before: float, after: float) -> str:
    return f"{100 * (after - before) / before:+.1f}%"


def render(r: dict) -> str:
    lines = ["# Alignment before tying (weight matching)", "",
             "Relative gap = ||A - B|| / max(||A||, ||B||) over the trunk (features.0, features.2: weights and biases).",
             "Coordinate descent: linear_sum_assignment per hidden layer, layers in random order until a pass changes nothing, "
             f"best of {r['same_data']['starts']} starts. One pass: each layer once, in order, from B as given.", "",
             "| models | trunk gap before | one alternating pass | coordinate descent | max abs output diff |", "|---|---|---|---|---|"]
    for label, k in ((f"(a) same digits, seeds {r['seeds'][0]} / {r['seeds'][1]}", "same_data"), ("(b) two input distributions", "two_distributions")):
        g = r[k]
        lines.append(f"| {label} | {g['trunk_gap_before']:.4f} | {g['trunk_gap_one_pass']:.4f} ({_pct(g['trunk_gap_before'], g['trunk_gap_one_pass'])}) | "
                     f"{g['trunk_gap_coordinate_descent']:.4f} ({_pct(g['trunk_gap_before'], g['trunk_gap_coordinate_descent'])}) | {g['max_abs_output_diff']:.2g} |")
    lines += ["", "## tie features.* (pair (b)), with and without --align", "",
              "Accuracy in % on each model's own test split; bytes are the pair's unique parameter bytes.", "",
              "| --align | lambda | epochs | gap before tuning | first epoch all gaps <= 1e-3 (lambda) | gap when shared | accuracy A before -> after | accuracy B before -> after | worst drop (points) | bytes |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for t in r["tie"]:
        reached = "never" if t["epoch_below_target"] is None else f"{t['epoch_below_target']} ({t['lambda_at_target']:g})"
        lines.append(f"| {'yes' if t['align'] else 'no'} | {t['lambda']} | {t['epochs']} | {t['gap_before_tuning']:.4f} | {reached} | {t['gap_at_sharing']:.2g} | "
                     f"{t['metric_before']['A']:.2f} -> {t['metric_final']['A']:.2f} | {t['metric_before']['B']:.2f} -> {t['metric_final']['B']:.2f} | "
                     f"{t['worst_drop']:.2f} | {t['bytes_before']:,} -> {t['bytes_after']:,} B ({_pct(t['bytes_before'], t['bytes_after'])}) |")
    lines += ["", f"Whole benchmark: {r['seconds']:.0f} s on CPU, torch with {r['torch_threads']} thread (`python benchmarks/bench_align.py`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
