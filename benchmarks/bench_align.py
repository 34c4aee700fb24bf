"""Alignment before tying: weight matching on digits MLPs trained from different seeds.

    python benchmarks/bench_align.py

(a) Two DigitsMLPs trained from different initialisations on the same digits
(the fixtures' recipe): the trunk's relative gap before and after alignment,
by coordinate descent from several starts and by a single alternating pass.
(b) The fixture pair's two input distributions (A: digits, B: shifted, lower
contrast, noisy), each model from its own initialisation: the gap before and
after alignment, and `tie` with and without --align: of the trunk
(features.*, -47.5% of the pair's bytes) and of every layer, head included
(-50%: the two models become one network serving both distributions).
Accuracy lost, and the epoch and lambda at which every group's gap first
fell below --target-gap. The whole-model tie is repeated on further seed
pairs, since one test sample is 0.22 points.

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
TRUNK, WHOLE = "A:features.* = B:features.*", "A:* = B:*"
# finetune_shared: epochs of task-only training after hard sharing (tie's default is 10).
TIE_RUNS = (
    {"groups": TRUNK, "lam": None, "epochs": 30, "finetune_shared": 10},
    {"groups": WHOLE, "lam": None, "epochs": 30, "finetune_shared": 10},
    {"groups": WHOLE, "lam": None, "epochs": 30, "finetune_shared": 30},
    {"groups": WHOLE, "lam": 100.0, "epochs": 30, "finetune_shared": 30},
)
MORE_SEEDS = ((13, 14), (15, 16))  # further pairs for the whole-model tie (auto lambda, finetune_shared 30)


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
    def tie_both(tmp: str, first: DigitsMLP, second: DigitsMLP, runs: tuple[dict, ...], seeds: tuple[int, int]) -> list[dict]:
        paths = [f"{tmp}/a.pt", f"{tmp}/b.pt"]
        torch.save(first.state_dict(), paths[0])
        torch.save(second.state_dict(), paths[1])
        rows = []
        for run in runs:
            for aligned in (False, True):
                options = TieOptions(groups=run["groups"], task="fixtures.digits_task:pair", arch="fixtures.architectures:DigitsMLP",
                                     lam=run["lam"], epochs=run["epochs"], finetune_shared=run["finetune_shared"], align=aligned, force=True)
                rows.append({**_tie_row(tie(paths, f"{tmp}/tied.pt", options), run, aligned), "seeds": seeds})
                print(rows[-1], flush=True)
        return rows

    with tempfile.TemporaryDirectory() as tmp:
        ties = tie_both(tmp, a, b, TIE_RUNS, SEEDS)
        more = [row for seeds in MORE_SEEDS for row in tie_both(tmp, trained(seeds[0], "a"), trained(seeds[1], "b"), TIE_RUNS[2:3], seeds)]
    result = {"seeds": SEEDS, "same_data": same, "two_distributions": pair, "tie": ties, "tie_more_seeds": more,
              "seconds": time.perf_counter() - start, "torch_threads": 1}
    (ROOT / "reports/align.json").write_text(json.dumps(result, indent=1) + "\n")
    (ROOT / "reports/align.md").write_text(render(result))
    print(render(result))


def _tie_row(r, run: dict, aligned: bool) -> dict:
    target = 1e-3
    worst = [max(g.gap_per_epoch[e] for g in r.groups) for e in range(len(r.lambdas))]
    below = next((e for e, g in enumerate(worst) if g <= target), None)
    key, drop = r.worst_drop
    return {
        "groups": "every layer" if run["groups"] == WHOLE else "features.*", "finetune_shared": run["finetune_shared"],
        "align": aligned, "lambda": "auto" if run["lam"] is None else run["lam"], "epochs": run["epochs"],
        "gap_before_tuning": max(g.gap_before for g in r.groups), "gap_at_sharing": max(g.gap_at_sharing for g in r.groups),
        "worst_gap_per_epoch": worst, "lambdas": list(r.lambdas), "epoch_below_target": None if below is None else below + 1, "lambda_at_target": None if below is None else r.lambdas[below],
        "metric_before": r.metric_before, "metric_final": r.metric_final, "worst_drop": drop, "worst_model": key,
        "bytes_before": r.bytes_before, "bytes_after": r.bytes_after, "notes": list(r.notes),
    }


def _reached(t: dict) -> str:
    return "never" if t["epoch_below_target"] is None else f"{t['epoch_below_target']} ({t['lambda_at_target']:g})"


def _tie_line(t: dict) -> str:
    return (f"| {t['groups']} | {'yes' if t['align'] else 'no'} | {t['lambda']} | {t['epochs']} + {t['finetune_shared']} | {t['gap_before_tuning']:.4f} | {_reached(t)} | "
            f"{t['gap_at_sharing']:.2g} | {t['metric_before']['A']:.2f} -> {t['metric_final']['A']:.2f} | {t['metric_before']['B']:.2f} -> {t['metric_final']['B']:.2f} | "
            f"{t['worst_drop']:.2f} | {t['bytes_before']:,} -> {t['bytes_after']:,} B ({_pct(t['bytes_before'], t['bytes_after'])}) |")


def _floors(r: dict) -> list[str]:
    """The issue's floors, each with the figure that decides it."""
    same, pair = r["same_data"], r["two_distributions"]
    cut = 1 - same["trunk_gap_coordinate_descent"] / same["trunk_gap_before"]
    whole = [t for t in r["tie"] + r["tie_more_seeds"] if t["groups"] == "every layer" and t["lambda"] == "auto" and t["finetune_shared"] == 30]
    aligned = [t for t in whole if t["align"]]
    plain = {tuple(t["seeds"]): t for t in whole if not t["align"]}
    half = all(t["bytes_after"] * 2 <= t["bytes_before"] for t in aligned)
    drop_ok = all(t["worst_drop"] <= 0.5 for t in aligned)
    epochs_ok = all(t["epoch_below_target"] is not None and plain[tuple(t["seeds"])]["epoch_below_target"] is not None
                    and t["epoch_below_target"] <= plain[tuple(t["seeds"])]["epoch_below_target"] for t in aligned)
    defaults = [t for t in r["tie"] if t["groups"] == "every layer" and t["lambda"] == "auto" and t["finetune_shared"] == 10 and t["align"]]
    drops = ", ".join(f"{t['worst_drop']:.2f}" for t in aligned)
    drops_plain = ", ".join(f"{plain[tuple(t['seeds'])]['worst_drop']:.2f}" for t in aligned)
    epochs, epochs_plain = ", ".join(_reached(t) for t in aligned), ", ".join(_reached(plain[tuple(t["seeds"])]) for t in aligned)
    drops_default = ", ".join(f"{t['worst_drop']:.2f}" for t in defaults)
    # The epoch before the target was reached, with and without alignment (first seed pair).
    t0 = aligned[0]
    k = (t0["epoch_below_target"] or 2) - 2
    before_target = f"at epoch {k + 1} (lambda {t0['lambdas'][k]:g}) the worst gap is {plain[tuple(t0['seeds'])]['worst_gap_per_epoch'][k]:.2g} without and {t0['worst_gap_per_epoch'][k]:.2g} with --align"
    return [
        f"- Same data, different seeds: alignment lowers the trunk gap by at least 25%: {cut * 100:.1f}% -> {'met' if cut >= 0.25 else 'NOT met'}.",
        f"- Two input distributions: gap before {pair['trunk_gap_before']:.4f}, after {pair['trunk_gap_coordinate_descent']:.4f} "
        f"({_pct(pair['trunk_gap_before'], pair['trunk_gap_coordinate_descent'])}): reported.",
        f"- `tie --align` at -50% of the pair's bytes (every layer tied), auto lambda, 30 + 30 epochs, {len(aligned)} seed pairs: -50%: {'met' if half else 'NOT met'}; "
        f"worst drop <= 0.5 point: {'met' if drop_ok else 'NOT met'} (worst drops {drops}; without --align {drops_plain}); "
        f"no more epochs than without alignment: {'met' if epochs_ok else 'NOT met'} "
        f"(epoch (lambda) {epochs} with --align; {epochs_plain} without).",
        f"- With tie's default 10 epochs of shared fine-tuning, every layer tied: worst drop {drops_default} with --align: "
        "the floor needs `--finetune-shared 30`.",
        "- Why the epochs do not fall with alignment: auto lambda doubles each epoch from 1, and the gap drops below 1e-3 in the epoch where "
        f"2 * lambda * lr reaches 1 (each step then sets every member to the group mean); {before_target}: "
        "alignment lowers each epoch's gap, not by the factor that would reach 1e-3 one doubling earlier.",
    ]


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
    lines += ["", f"## tie (pair (b), seeds {r['seeds'][0]} / {r['seeds'][1]}), with and without --align", "",
              "Accuracy in % on each model's own test split (450 samples: one sample is 0.22 points); bytes are the pair's unique parameter bytes. "
              "Epochs: of penalised fine-tuning; then hard sharing and `--finetune-shared` epochs on the task loss alone.", "",
              "| tied | --align | lambda | epochs + finetune-shared | gap before tuning | first epoch all gaps <= 1e-3 (lambda) | gap when shared | accuracy A before -> after | accuracy B before -> after | worst drop (points) | bytes |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_tie_line(t) for t in r["tie"]]
    lines += ["", "Every layer tied (auto lambda, 30 + 30 epochs) on further seed pairs:", "",
              "| seeds | --align | first epoch all gaps <= 1e-3 (lambda) | accuracy A before -> after | accuracy B before -> after | worst drop (points) | bytes |",
              "|---|---|---|---|---|---|---|"]
    for t in r["tie_more_seeds"]:
        lines.append(f"| {t['seeds'][0]} / {t['seeds'][1]} | {'yes' if t['align'] else 'no'} | {_reached(t)} | {t['metric_before']['A']:.2f} -> {t['metric_final']['A']:.2f} | "
                     f"{t['metric_before']['B']:.2f} -> {t['metric_final']['B']:.2f} | {t['worst_drop']:.2f} | {_pct(t['bytes_before'], t['bytes_after'])} |")
    lines += ["", "## Floors", ""] + _floors(r)
    lines += ["", f"Whole benchmark: {r['seconds']:.0f} s on CPU, torch with {r['torch_threads']} thread (`python benchmarks/bench_align.py`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
