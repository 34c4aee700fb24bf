"""sharescan zoo on a generated zoo of fine-tune-like models: scale, agreement with analyze, rescans, bytes against chunk dedup.

    python benchmarks/bench_zoo.py                 # 1,000 variants, medians where cheap
    python benchmarks/bench_zoo.py --n 200 --runs 1 --out /tmp/zoo-bench   # a quick look, reports elsewhere

Makes (once; cached under ~/.cache/sharescan-corpus/zoo) a zoo with
benchmarks/make_zoo.py, then measures, each with the command that gives it:

1. The zoo scanned on a LocalCluster of 2 workers (``sharescan zoo
   manifest.txt --json --workers 2 --store S``, a fresh store), and the
   planted relations it finds (recall against truth.json).
2. On a 50-model subset: the zoo's groups against single-process
   ``sharescan analyze`` on the same files (relation + member set).
3. Throughput per core: models/s/core of the zoo scan (2 workers) against
   ``sharescan analyze`` over the same files in one process, by wall time and
   by CPU time (all processes of the run, from getrusage of the children).
4. A rescan of the unchanged zoo against the first scan (same store).
5. Bytes kept by sharescan against storage-side chunk dedup
   (benchmarks/chunk_dedup.py) over the same readable files, and the digits
   accuracy cost of every near merge (the variant's tensor replaced by the
   kept one, on the variant's own task).
6. On paper, 100,000 models on a multi-node cluster, from the measured
   per-model costs.

Writes reports/zoo.json and reports/zoo.md (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import chunk_dedup, make_zoo  # noqa: E402

SHARESCAN = [sys.executable, "-m", "sharescan"]
CODE = [ROOT]  # where ``python -m sharescan`` runs (a snapshot of a commit, see --commit)
CACHE = Path.home() / ".cache" / "sharescan-corpus" / "zoo"
MiB = 1024 * 1024
WORKERS = 2  # this machine's cores
SUBSET = 50
# Floors (the brief this benchmark answers to).
PER_CORE_FLOOR = 1.5  # the zoo's models/s/core at most this much below analyze's
RESCAN_FLOOR = 0.05  # a rescan of the unchanged zoo at most this fraction of the first scan


@dataclass
class Run:
    """One command in a fresh process: wall seconds, CPU seconds of it and its children, peak RSS, output."""

    command: str
    wall: float
    cpu: float
    peak_rss_mib: float
    returncode: int
    stdout: str = field(repr=False)
    stderr_tail: str = ""
    # (seconds since start, CPU seconds of the main process alone) when the first line containing each marker arrived
    marks: dict[str, tuple[float, float]] = field(default_factory=dict)


def run(args: list[str], markers: tuple[str, ...] = ()) -> Run:
    """Run ``sharescan ARGS``; timestamps the stderr lines that carry ``markers`` (with -v: the phases)."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([*SHARESCAN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=CODE[0])
    ps = psutil.Process(proc.pid)
    marks: dict[str, tuple[float, float]] = {}
    tail: list[str] = []
    last_cpu = [0.0]

    def own_cpu() -> float:
        try:
            t = ps.cpu_times()
            last_cpu[0] = t.user + t.system
        except psutil.Error:
            pass
        return last_cpu[0]

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            for m in markers:
                if m in line:
                    marks[m] = (time.perf_counter() - start, own_cpu())  # the latest line with the marker
            tail.append(line)
            del tail[:-20]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    stdout_chunks = []
    assert proc.stdout is not None
    stdout_chunks.append(proc.stdout.read())
    while proc.poll() is None:
        own_cpu()
        time.sleep(0.2)
    reader.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    marks["end"] = (wall, last_cpu[0])
    shown = "sharescan " + " ".join(args)
    return Run(shown, round(wall, 3), round(cpu, 3), round(after.ru_maxrss / 1024, 1), proc.returncode, "".join(stdout_chunks), "".join(tail)[-2000:], marks)


def checked(r: Run) -> dict:
    if r.returncode != 0:
        raise SystemExit(f"{r.command} exited {r.returncode}: {r.stderr_tail}")
    return json.loads(r.stdout)


# --- comparisons -------------------------------------------------------------


def group_keys(groups: list[dict], member_name: str) -> set[tuple[str, frozenset]]:
    """Each group as (relation, the set of its members' (absolute model path, tensor name))."""
    return {(g["relation"], frozenset((os.path.abspath(m["model"]), m[member_name]) for m in g["members"])) for g in groups}


def recall(zoo: dict, truth: dict, zoo_dir: Path) -> dict:
    """Planted relations to the base found: each planted tensor must sit in a group (any member, any relation)."""
    in_group: dict[tuple[str, str], str] = {}
    for g in zoo["groups"]:
        for m in g["members"]:
            in_group[(os.path.relpath(os.path.abspath(m["model"]), zoo_dir), m["tensor"])] = g["relation"]
    found: dict[str, dict[str, int]] = {}
    for model in truth["models"][1:]:  # the base is the tensor the others are measured against
        for name, t in model["tensors"].items():
            label = t["relation"] + (" (transposed)" if t["transposed"] else "")
            if t["relation"] == "tuned":  # a slight fine-tune's tensor just past the tolerance, or a longer fine-tune's
                label += ", full_tuned" if model["kind"] == "full_tuned" else ", slight fine-tunes"
            row = found.setdefault(label, {"planted": 0, "in_a_group": 0, "in_whole_tensor_group": 0})
            row["planted"] += 1
            rel = in_group.get((model["path"], name))
            row["in_a_group"] += rel is not None
            row["in_whole_tensor_group"] += rel is not None and rel != "rows"
    return found


def near_costs(zoo: dict, truth: dict, zoo_dir: Path) -> dict:
    """Digits accuracy change of every near merge (one tensor replaced by the kept one) and per model (all of its merges)."""
    by_path = {m["path"]: m for m in truth["models"]}
    params: dict[str, dict[str, np.ndarray]] = {}

    def canonical(rel: str) -> dict[str, np.ndarray]:
        if rel not in params:
            params[rel] = make_zoo.load_params(zoo_dir / rel, by_path[rel]["tensors"])
        return params[rel]

    merges = []
    per_model: dict[str, dict[str, np.ndarray]] = {}
    worst_distance = 0.0
    for g in zoo["groups"]:
        if g["relation"] != "near":
            continue
        kept = g["members"][0]
        kept_rel = os.path.relpath(os.path.abspath(kept["model"]), zoo_dir)
        kept_stored = make_zoo.read_tensor(zoo_dir / kept_rel, kept["tensor"])
        for m in g["members"][1:]:
            rel = os.path.relpath(os.path.abspath(m["model"]), zoo_dir)
            entry = by_path[rel]
            t = entry["tensors"][m["tensor"]]
            replacement = kept_stored.T if m.get("transposed") else kept_stored
            own = canonical(rel)
            value = replacement.T if t["transposed"] else replacement
            distance = float(np.linalg.norm(value - own[t["param"]]) / np.linalg.norm(own[t["param"]]))
            worst_distance = max(worst_distance, distance)
            x, y = make_zoo.digits_task(tuple(entry["task"]["shift"]))
            before = make_zoo.accuracy(own, x, y)
            after = make_zoo.accuracy({**own, t["param"]: value}, x, y)
            merges.append({"model": rel, "tensor": m["tensor"], "param": t["param"], "rel_distance": distance, "accuracy_before": before, "accuracy_after": after, "drop": before - after})
            per_model.setdefault(rel, dict(own))[t["param"]] = value
    model_drops = []
    for rel, merged in per_model.items():
        x, y = make_zoo.digits_task(tuple(by_path[rel]["task"]["shift"]))
        model_drops.append(make_zoo.accuracy(canonical(rel), x, y) - make_zoo.accuracy(merged, x, y))

    def summary(drops: list[float]) -> dict:
        if not drops:
            return {"count": 0}
        a = np.array(drops)
        return {"count": len(a), "max_drop_points": round(float(a.max()), 3), "median_drop_points": round(float(np.median(a)), 3),
                "mean_drop_points": round(float(a.mean()), 4), "p99_drop_points": round(float(np.percentile(a, 99)), 3),
                "unchanged": int((a == 0).sum()), "worse": int((a > 0).sum()), "better": int((a < 0).sum())}

    lossy_rows = [g for g in zoo["groups"] if g["relation"] == "rows" and g["rel_error"] > 0]
    return {"per_merge": summary([m["drop"] for m in merges]), "per_model": summary(model_drops),
            "largest_rel_distance": worst_distance, "lossy_rows_groups_not_measured": len(lossy_rows),
            "merges": sorted(merges, key=lambda m: -m["drop"])[:20]}


def store_sizes(path: Path) -> dict:
    with sqlite3.connect(path) as db:
        results = db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM results").fetchone()[0]
        tensors = db.execute("SELECT COUNT(*) FROM tensors").fetchone()[0]
        models = db.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    size = path.stat().st_size
    return {"file_bytes": size, "result_json_bytes": results, "digest_bytes": size - results, "models": models, "tensors": tensors}


# --- the benchmark --------------------------------------------------------------


def zoo_scan(manifest: Path, store: Path, workers: int = WORKERS) -> Run:
    for p in (store, Path(f"{store}-wal"), Path(f"{store}-shm"), Path(f"{store}-journal")):
        p.unlink(missing_ok=True)
    return run(["-v", "zoo", str(manifest), "--json", "--workers", str(workers), "--store", str(store)], markers=("digested", "finding"))


def subset_manifest(truth: dict, zoo_dir: Path, folder: Path, n: int) -> tuple[Path, list[str]]:
    """The base and n-1 other readable models, drawn with a fixed seed from every kind."""
    rng = np.random.default_rng(7)
    others = [m["path"] for m in truth["models"][1:]]
    picked = [truth["models"][0]["path"]] + [others[i] for i in sorted(rng.choice(len(others), n - 1, replace=False))]
    paths = [str(zoo_dir / p) for p in picked]
    manifest = folder / f"subset{n}.txt"
    manifest.write_text("".join(p + "\n" for p in paths))
    return manifest, paths


def median_runs(make: object, runs: int) -> tuple[Run, list[Run]]:
    done = [make() for _ in range(runs)]  # type: ignore[operator]
    return sorted(done, key=lambda r: r.wall)[len(done) // 2], done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="variants in the zoo")
    parser.add_argument("--runs", type=int, default=3, help="runs of the cheap measurements (subset scans, rescans): the median is reported")
    parser.add_argument("--hidden", type=int, default=make_zoo.ARCH[1], help="hidden width of the zoo's MLP (make_zoo.py --hidden): 1024 makes 4.3 MiB models, about 4.5 GB for 1,000")
    parser.add_argument("--zoo", type=Path, help="zoo folder (default ~/.cache/sharescan-corpus/zoo/nN-seed0, nN-hH-seed0 for another width; made if missing)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="where zoo.json and zoo.md go")
    parser.add_argument("--commit", default="HEAD", help="measure sharescan as committed at this revision (a snapshot by git archive; 'worktree' for the working tree as it is)")
    parser.add_argument("--skip-analyze-full", action="store_true", help="compare throughput on the subset only (analyze over the whole zoo in one process is the slowest step)")
    parser.add_argument("--render", action="store_true", help="only rewrite zoo.md from the zoo.json in --out")
    opts = parser.parse_args()
    if opts.render:  # the projection is arithmetic on the measured figures: recomputed with them
        report = json.loads((opts.out / "zoo.json").read_text())
        report["projection"] = projection(report, report["scan"]["models_ok"] + report["scan"]["skipped"])
        (opts.out / "zoo.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        (opts.out / "zoo.md").write_text(markdown(report))
        return
    width = "" if opts.hidden == make_zoo.ARCH[1] else f"-h{opts.hidden}"
    zoo_dir = (opts.zoo or CACHE / f"n{opts.n}{width}-seed0").resolve()
    snapshot = tempfile.TemporaryDirectory()
    commit = "working tree"
    if opts.commit != "worktree":
        # Other edits in the working tree do not leak into the figures: run the committed code.
        commit = subprocess.run(["git", "rev-parse", "--short", opts.commit], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
        archive = subprocess.run(["git", "archive", commit, "sharescan"], capture_output=True, check=True, cwd=ROOT).stdout
        subprocess.run(["tar", "-x", "-C", snapshot.name], input=archive, check=True)
        CODE[0] = Path(snapshot.name)
    if not (zoo_dir / "truth.json").exists():
        print(f"making the zoo in {zoo_dir}", flush=True)
        make_zoo.make_zoo(opts.n, zoo_dir, hidden=opts.hidden)
    truth = json.loads((zoo_dir / "truth.json").read_text())
    manifest = zoo_dir / "manifest.txt"
    unreadable = {u["path"] for u in truth["unreadable"]}
    # In the manifest's order, the order the zoo lists them: near crowds are led by the first member met.
    readable = [zoo_dir / line for line in manifest.read_text().split() if line not in unreadable]
    report: dict = {"commit": commit, "python": sys.version.split()[0], "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                    "zoo": {"dir": str(zoo_dir).replace(str(Path.home()), "~"), "variants": truth["n"], "files": len(readable) + len(truth["unreadable"]),
                            "readable": len(readable), "unreadable": len(truth["unreadable"]), "file_bytes": truth["file_bytes"], "kinds": truth["kinds"],
                            "formats": truth["formats"], "tensor_relations": truth["tensor_relations"], "generate_seconds": truth["seconds"],
                            "arch": truth["arch"], "command": f"python benchmarks/make_zoo.py --n {truth['n']}{'' if truth['arch'][1] == make_zoo.ARCH[1] else ' --hidden ' + str(truth['arch'][1])} --out {str(zoo_dir).replace(str(Path.home()), '~')}"}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = tmp / "zoo.sqlite"

        # 1. The whole zoo on a LocalCluster of 2 workers.
        print("scanning the zoo", flush=True)
        first, firsts = median_runs(lambda: zoo_scan(manifest, store), opts.runs)  # each with a fresh store; the last one's stays for the rescans
        result = checked(first)
        stable = all(group_keys(checked(r)["groups"], "tensor") == group_keys(result["groups"], "tensor") for r in firsts)
        digest_end = first.marks.get("digested", (first.wall, 0.0))
        join_start = first.marks.get("finding", digest_end)
        models_ok = sum(1 for m in result["models"] if m["status"] == "ok")
        skipped = [m for m in result["models"] if m["status"] != "ok"]
        report["scan"] = {
            "command": first.command.replace(str(store), "S").replace(str(zoo_dir), "ZOO"),
            "runs": len(firsts), "all_wall_seconds": [r.wall for r in firsts], "all_cpu_seconds": [r.cpu for r in firsts], "same_groups_every_run": stable,
            "wall_seconds": first.wall, "cpu_seconds_all_processes": first.cpu, "peak_rss_mib_largest_process": first.peak_rss_mib,
            "digest_phase_wall_seconds": round(digest_end[0], 2), "join_wall_seconds": round(first.wall - digest_end[0], 2),
            "join_cpu_seconds_main_process": round(first.marks["end"][1] - join_start[1], 2) if "finding" in first.marks else None,
            "models_ok": models_ok, "skipped": len(skipped), "skipped_reasons": [m["reason"] for m in skipped],
            "skipped_match_truth": sorted(os.path.relpath(os.path.abspath(m["path"]), zoo_dir) for m in skipped) == sorted(u["path"] for u in truth["unreadable"]),
            "timing": result["timing"], "totals": result["totals"], "groups": len(result["groups"]), "families": len(result["families"]),
            "recall": recall(result, truth, zoo_dir), "store": store_sizes(store),
        }
        report["scan"]["floor_met"] = models_ok == len(readable) and report["scan"]["skipped_match_truth"]
        print(json.dumps({k: report["scan"][k] for k in ("wall_seconds", "cpu_seconds_all_processes", "digest_phase_wall_seconds", "join_wall_seconds")}), flush=True)

        # 4. Rescans of the unchanged zoo (same store).
        rescan, rescans = median_runs(lambda: run(["zoo", str(manifest), "--json", "--workers", str(WORKERS), "--store", str(store)]), max(opts.runs, 3))
        again = checked(rescan)
        report["rescan"] = {"command": "the same command again, same store", "runs": len(rescans), "median_wall_seconds": rescan.wall,
                            "all_wall_seconds": [r.wall for r in rescans], "timing": again["timing"], "fraction_of_first": round(rescan.wall / first.wall, 4),
                            "same_groups": group_keys(again["groups"], "tensor") == group_keys(result["groups"], "tensor"), "floor": RESCAN_FLOOR}
        report["rescan"]["floor_met"] = report["rescan"]["fraction_of_first"] <= RESCAN_FLOOR and report["rescan"]["same_groups"]

        # 2. The subset: zoo against analyze.
        print("subset: zoo and analyze", flush=True)
        sub_manifest, sub_paths = subset_manifest(truth, zoo_dir, tmp, SUBSET)
        sub_zoo, sub_zoo_runs = median_runs(lambda: zoo_scan(sub_manifest, tmp / "sub.sqlite"), opts.runs)
        sub_an, sub_an_runs = median_runs(lambda: run(["analyze", *sub_paths, "--json", "--candidates", "0"]), opts.runs)
        zk = group_keys(checked(sub_zoo)["groups"], "tensor")
        ak = group_keys(checked(sub_an)["groups"], "name")
        report["subset"] = {
            "models": SUBSET, "zoo_command": f"sharescan zoo subset{SUBSET}.txt --json --workers 2 --store S (fresh store)",
            "analyze_command": f"sharescan analyze <the {SUBSET} files> --json --candidates 0",
            "zoo_groups": len(zk), "analyze_groups": len(ak), "identical": zk == ak,
            "only_zoo": [[r, sorted(m)[:3]] for r, m in sorted(zk - ak, key=str)][:5], "only_analyze": [[r, sorted(m)[:3]] for r, m in sorted(ak - zk, key=str)][:5],
            "zoo_wall_seconds": [r.wall for r in sub_zoo_runs], "analyze_wall_seconds": [r.wall for r in sub_an_runs],
            "zoo_cpu_seconds": [r.cpu for r in sub_zoo_runs], "zoo_timing": checked(sub_zoo)["timing"], "analyze_cpu_seconds": [r.cpu for r in sub_an_runs],
        }
        report["subset"]["floor_met"] = report["subset"]["identical"]

        # 3. Throughput per core.
        rows = {"subset": (SUBSET, sub_zoo, sub_an)}
        if not opts.skip_analyze_full:
            print("analyze over the whole zoo in one process", flush=True)
            full_an, full_ans = median_runs(lambda: run(["analyze", *map(str, readable), "--json", "--candidates", "0"]), opts.runs)
            full = checked(full_an)
            fk, rk = group_keys(full["groups"], "name"), group_keys(result["groups"], "tensor")
            report["analyze_full"] = {"command": f"sharescan analyze <the {len(readable)} readable files, manifest order> --json --candidates 0", "wall_seconds": full_an.wall,
                                      "all_wall_seconds": [r.wall for r in full_ans], "cpu_seconds": full_an.cpu, "peak_rss_mib": full_an.peak_rss_mib, "same_groups_as_zoo": fk == rk,
                                      "only_zoo": [[r, sorted(m)[:3]] for r, m in sorted(rk - fk, key=str)][:5], "only_analyze": [[r, sorted(m)[:3]] for r, m in sorted(fk - rk, key=str)][:5]}
            rows["zoo"] = (len(readable), first, full_an)
        # How the join grows: prefixes of the manifest in one process (no cluster start-up in the figures).
        print("join scaling", flush=True)
        listed = manifest.read_text().split()
        scaling = []
        for k in sorted({min(k, len(listed)) for k in (125, 250, 500, len(listed))}):
            prefix = tmp / f"prefix{k}.txt"
            prefix.write_text("".join(str(zoo_dir / line) + "\n" for line in listed[:k]))
            # The faster of two fresh scans: one run's join moved by half a second with other work on the cores.
            tries = []
            for attempt in range(2):
                store = tmp / f"prefix{k}-{attempt}.sqlite"
                r = run(["zoo", str(prefix), "--json", "--scheduler", "none", "--store", str(store)])
                tries.append((checked(r)["timing"]["join_seconds"], r))
            r = min(tries, key=lambda t: t[0])[1]
            tm = checked(r)["timing"]
            scaling.append({"files": k, "wall_seconds": r.wall, "digest_seconds": tm.get("digest_seconds"), "join_seconds": tm.get("join_seconds"), "tensors_read": tm["tensors_read"],
                            "pairs_measured": tm.get("pairs_measured", 0), "measure_seconds": tm.get("measure_seconds", 0.0)})
        xs = np.log([row["files"] for row in scaling])

        def growth(values: list[float]) -> float:
            return round(float(np.polyfit(xs, np.log(np.maximum(values, 1e-3)), 1)[0]), 3)

        report["join_scaling"] = {
            "command": "sharescan zoo prefixK.txt --json --scheduler none --store S (the first K lines of the manifest, fresh store; the faster join of 2 runs)", "rows": scaling,
            "join_exponent": growth([row["join_seconds"] for row in scaling]),
            "serial_exponent": growth([row["join_seconds"] - row["measure_seconds"] for row in scaling]),
            "measure_exponent": growth([row["measure_seconds"] for row in scaling]),
            "reads_exponent": growth([row["tensors_read"] for row in scaling]),
        }
        report["throughput"] = {}
        for label, (n, z, a) in rows.items():
            zoo_wall = n / z.wall / WORKERS
            an_wall = n / a.wall
            report["throughput"][label] = {
                "models": n, "zoo_models_per_s_per_core_wall": round(zoo_wall, 3), "analyze_models_per_s_per_core_wall": round(an_wall, 3),
                "ratio_wall": round(an_wall / zoo_wall, 3),
                "zoo_models_per_cpu_s": round(n / z.cpu, 3), "analyze_models_per_cpu_s": round(n / a.cpu, 3), "ratio_cpu": round((n / a.cpu) / (n / z.cpu), 3),
            }
        digest_s = result["timing"].get("digest_seconds", report["scan"]["digest_phase_wall_seconds"])
        report["throughput"]["digest_phase_only"] = {"models": len(readable) + len(unreadable), "seconds": digest_s,
                                                     "zoo_models_per_s_per_core_wall": round((len(readable) + len(unreadable)) / digest_s / WORKERS, 3)}
        main_row = report["throughput"].get("zoo", report["throughput"]["subset"])
        report["throughput"]["floor"] = PER_CORE_FLOOR
        report["throughput"]["floor_met_wall"] = main_row["ratio_wall"] <= PER_CORE_FLOOR
        report["throughput"]["floor_met_cpu"] = main_row["ratio_cpu"] <= PER_CORE_FLOOR

    # 5. Bytes against chunk dedup, and what near merges cost.
    print("chunk dedup and near-merge accuracy", flush=True)
    chunks = chunk_dedup.dedup_all(readable)
    t = result["totals"]
    exact_reclaimable = sum(g["bytes_reclaimable"] for g in result["groups"] if g["rel_error"] == 0)
    kept_all = t["file_bytes"] - t["reclaimable_bytes"]
    kept_exact = t["file_bytes"] - exact_reclaimable
    report["bytes"] = {
        "files": len(readable), "file_bytes": t["file_bytes"], "tensor_bytes": t["input_bytes"],
        "sharescan_kept_bytes": kept_all, "sharescan_kept_exact_only_bytes": kept_exact,
        "how": "file bytes minus the tensor bytes sharing reclaims (headers and graphs stay); exact only: groups with rel_error 0",
        "chunk_dedup": [asdict(c) | {"kept_fraction": round(c.kept_fraction, 4)} for c in chunks],
        "command_chunk_dedup": "python benchmarks/chunk_dedup.py ZOO (over the readable files)",
    }
    report["bytes"]["floor_met"] = all(kept_all < c.kept_bytes for c in chunks if c.scheme != "file")
    report["bytes"]["exact_only_beats_chunks"] = {c.scheme: kept_exact < c.kept_bytes for c in chunks}
    report["near_merge_cost"] = near_costs(result, truth, zoo_dir)

    # 6. On paper: 100,000 models.
    report["projection"] = projection(report, len(readable) + len(truth["unreadable"]))
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "zoo.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (opts.out / "zoo.md").write_text(markdown(report))
    print(f"wrote {opts.out / 'zoo.md'}", flush=True)


def projection(report: dict, files: int) -> dict:
    """100,000 models on a cluster of W worker cores, from this run's per-model costs (arithmetic in ``steps``)."""
    scan = report["scan"]
    target = 100_000
    n = scan["models_ok"]
    digest_bytes_per_model = scan["store"]["digest_bytes"] / files
    result_bytes_per_model = scan["store"]["result_json_bytes"] / files
    # Worker-seconds per digested model: the digest phase kept WORKERS processes busy.
    digest_core_s = scan["digest_phase_wall_seconds"] * WORKERS / files
    timing = scan["timing"]
    digest_s = timing.get("digest_seconds", scan["digest_phase_wall_seconds"])
    # Worker-seconds per digested model: the digest phase kept WORKERS processes busy.
    digest_core_s = digest_s * WORKERS / files
    js = report["join_scaling"]
    largest = js["rows"][-1]
    exponent = js["join_exponent"]
    mean_tensor_bytes = scan["totals"]["input_bytes"] / n / len(make_zoo.PARAMS)
    steps = []
    store_gb = target * (digest_bytes_per_model + result_bytes_per_model) / 1e9
    steps.append(f"digest store: {digest_bytes_per_model:,.0f} B of digests + {result_bytes_per_model:,.0f} B of result JSON per model (measured: {scan['store']['file_bytes']:,} B for {files} files) x {target:,} = {store_gb:.2f} GB")
    shuffle_gb = target * digest_bytes_per_model / 1e9
    steps.append(f"shuffle: each worker sends its models' digests to the client once (the store's digest bytes): {digest_bytes_per_model:,.0f} B x {target:,} = {shuffle_gb:.2f} GB; "
                 "no worker-to-worker shuffle (the join runs in the client; the pairs it sends the workers to measure are a few bytes each, the workers read the tensors from model storage)")
    reads_at_target = largest["tensors_read"] * (target / largest["files"]) ** js["reads_exponent"]
    reads_gb = reads_at_target * mean_tensor_bytes / 1e9
    steps.append(f"confirming reads in the join: {largest['tensors_read']:,} tensors for {largest['files']:,} files, growing as files^{js['reads_exponent']:.2f}: "
                 f"{largest['tensors_read']:,} x ({target:,}/{largest['files']:,})^{js['reads_exponent']:.2f} = {reads_at_target:,.0f} reads x ~{mean_tensor_bytes / 1024:.0f} KiB mean tensor = {reads_gb:,.0f} GB "
                 "read from model storage, by the client or, for the near pairs sent to them, by the workers (the crowds of near fine-tunes are confirmed tensor by tensor)")
    digest_hours = {w: target * digest_core_s / w / 3600 for w in (64, 256)}
    steps.append(f"digest phase: {digest_core_s:.4f} worker-seconds per model (digest {digest_s:.1f} s x {WORKERS} workers / {files} files) x {target:,} / W worker cores: "
                 + ", ".join(f"W={w}: {h * 60:.1f} min" for w, h in digest_hours.items()) + f" (models of ~340 KB: {target * 340e3 / 1e9:.0f} GB to read; digest cost grows with a model's bytes)")
    join_one = largest["join_seconds"]
    join_linear_h = join_one * target / largest["files"] / 3600
    join_fit_h = join_one * (target / largest["files"]) ** exponent / 3600
    scale = target / largest["files"]
    serial_one, measure_one = join_one - largest["measure_seconds"], largest["measure_seconds"]
    serial_h = serial_one * scale ** js["serial_exponent"] / 3600
    measure_h = measure_one * scale ** js["measure_exponent"] / 3600
    steps.append(f"join phase, in one process: {join_one:.1f} s for {largest['files']:,} files (as a whole growing as files^{exponent:.2f}, least squares over "
                 f"{', '.join(str(r['files']) for r in js['rows'])} files; linear would give {_span(join_linear_h)} at {target:,}); its two parts grow apart, so each is extrapolated on its own:")
    steps.append(f"of it, the near search's exact distances ({largest['pairs_measured']:,} pairs, {measure_one:.1f} s, growing as files^{js['measure_exponent']:.2f}: {_span(measure_h)} at {target:,}) "
                 f"go to the workers at that size (a batch goes when its share of the work outweighs the ~1 ms a model costs a worker: at 100,000 models, hours against minutes), "
                 f"and the rest ({serial_one:.1f} s, growing as files^{js['serial_exponent']:.2f}: {_span(serial_h)}) runs in the client; "
                 "extrapolated over two orders of magnitude from 125-1,006 files, so a rough figure")
    reopen_h = target * 1e-3 / 3600  # each worker reads afresh the models its pairs lie in: ~1 ms a model (sharescan/zoo/measure.py)
    join_h = {w: serial_h + measure_h / w + reopen_h for w in (64, 256)}
    larger = "the client's part" if serial_h > measure_h / 64 + reopen_h else "the workers' part"
    steps.append(f"expected time at W=64: {_span(digest_hours[64])} of digests + {_span(serial_h)} in the client + {_span(measure_h)} / 64 on the workers "
                 f"+ {_span(reopen_h)} for each worker to read the models afresh = {_span(digest_hours[64] + join_h[64])} "
                 f"(W=256: {_span(digest_hours[256] + join_h[256])}), {larger} the larger; "
                 f"a rescan after adding 1% new models digests only those ({digest_hours[64] * 36:.1f} s at W=64) but joins everything again (the join has no incremental form)")
    steps.append(f"client memory for the join: the digests of every model at once, ~{shuffle_gb:.1f} GB (the store's digest bytes)")
    return {"models": target, "store_gb": round(store_gb, 2), "shuffle_gb": round(shuffle_gb, 2), "join_reads_gb": round(reads_gb, 1),
            "digest_hours": {str(w): round(h, 3) for w, h in digest_hours.items()}, "join_growth_exponent": round(exponent, 2), "join_reads": round(reads_at_target),
            "join_hours": round(serial_h + measure_h, 2), "join_hours_whole_fit": round(join_fit_h, 2), "join_hours_if_linear": round(join_linear_h, 2), "join_client_hours": round(serial_h, 2), "join_worker_hours": round(measure_h, 2),
            "expected_hours": {str(w): round(digest_hours[w] + h, 2) for w, h in join_h.items()}, "steps": steps}


def _span(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def _yes(flag: bool) -> str:
    return "**met**" if flag else "**not met**"


def _params(arch: list[int]) -> int:
    return sum((a + 1) * b for a, b in zip(arch[:-1], arch[1:]))


def markdown(r: dict) -> str:
    z, s, b = r["zoo"], r["scan"], r["bytes"]
    arch = z.get("arch", list(make_zoo.ARCH))
    lines = [
        "# sharescan zoo on 1,000 fine-tune-like models",
        "",
        f"`python benchmarks/bench_zoo.py` (sharescan at {r['commit']}, Python {r['python']}, {r['cpu_count']} cores shared with other work; load average at start "
        f"{', '.join(f'{x:.1f}' for x in r['load_average_at_start'])}). Times are wall seconds; CPU seconds count every process of the run.",
        "",
        "## The zoo",
        "",
        f"`{z['command']}`: {z['variants']:,} variants of one digits MLP {'-'.join(map(str, arch))} ({_params(arch) * 4 / 1024:,.0f} KiB of float32) plus the base, "
        f"{z['readable']:,} readable files and {z['unreadable']} truncated ones, {z['file_bytes'] / MiB:.1f} MiB; generated in {z['generate_seconds']['total']:.0f} s "
        f"({z['generate_seconds']['train']:.0f} s training, every variant of a kind trained together as one batched model).",
        "",
        "Kinds: " + ", ".join(f"{k} {v}" for k, v in z["kinds"].items()) + ". Formats: " + ", ".join(f"{k} {v}" for k, v in z["formats"].items()) + ".",
        "Tensors by planted relation to the base: " + ", ".join(f"{k} {v:,}" for k, v in z["tensor_relations"].items()) + ".",
        "",
        "## Floors",
        "",
        "| floor | measured | |",
        "| --- | --- | --- |",
        f"| {z['files']:,} files scanned on a LocalCluster (2 workers) | {s['models_ok']:,} read, {s['skipped']} skipped (the planted truncated files: {'yes' if s['skipped_match_truth'] else 'no'}), "
        f"{s['wall_seconds']:.0f} s wall | {_yes(s['floor_met'])} |",
        f"| {r['subset']['models']}-model subset: zoo groups = analyze groups (relation + member set) | {r['subset']['zoo_groups']} vs {r['subset']['analyze_groups']} groups, identical: {'yes' if r['subset']['identical'] else 'no'} | {_yes(r['subset']['floor_met'])} |",
    ]
    tp = r["throughput"]
    main_row = tp.get("zoo", tp["subset"])
    lines.append(f"| models/s/core within {tp['floor']}x of single-process analyze | wall: analyze {main_row['analyze_models_per_s_per_core_wall']:.2f}, zoo {main_row['zoo_models_per_s_per_core_wall']:.2f} "
                 f"({main_row['ratio_wall']:.2f}x); CPU: analyze {main_row['analyze_models_per_cpu_s']:.2f}, zoo {main_row['zoo_models_per_cpu_s']:.2f} models per CPU-second ({main_row['ratio_cpu']:.2f}x) | "
                 f"wall {_yes(tp['floor_met_wall'])}, CPU {_yes(tp['floor_met_cpu'])} |")
    rs = r["rescan"]
    lines.append(f"| rescan of the unchanged zoo <= {rs['floor']:.0%} of the first scan | median {rs['median_wall_seconds']:.2f} s of {rs['runs']} = {rs['fraction_of_first']:.2%} of {s['wall_seconds']:.0f} s | {_yes(rs['floor_met'])} |")
    cheapest = min((c for c in b["chunk_dedup"] if c["scheme"] != "file"), key=lambda c: c["kept_bytes"])
    lines.append(f"| sharescan keeps fewer bytes than chunk dedup (fixed and CDC) | sharescan {b['sharescan_kept_bytes'] / MiB:.1f} MiB; best chunking ({cheapest['scheme']}) {cheapest['kept_bytes'] / MiB:.1f} MiB | {_yes(b['floor_met'])} |")
    nm = r["near_merge_cost"]["per_merge"]
    lines.append(f"| accuracy cost of every near merge reported | {nm.get('count', 0):,} merges: max drop {nm.get('max_drop_points', 0):.2f} points, median {nm.get('median_drop_points', 0):.2f} | reported |")
    lines += ["", "## 1. The scan", "", f"`{s['command']}` (with `-v`, to timestamp the phases): "
              f"{s['wall_seconds']:.1f} s wall, {s['cpu_seconds_all_processes']:.1f} CPU-seconds; digests done at {s['digest_phase_wall_seconds']:.1f} s, "
              f"then {s['join_wall_seconds']:.1f} s joining ({s['timing'].get('tensors_read', 0):,} tensors read to confirm candidates, "
              f"{s['timing'].get('models_reopened', 0):,} model reopenings). {s['groups']:,} groups, {s['families']} families.",
              "", f"{s['runs']} scans, each with a fresh store: {s['all_wall_seconds']} s wall (median quoted), same groups every run: {'yes' if s['same_groups_every_run'] else 'no'}.",
              "", "Totals: " + ", ".join(f"{k} {v:,}" for k, v in s["totals"].items() if isinstance(v, int)) + ".",
              "", "Recall of the planted relations (each tensor of each variant; the base is the reference):", "",
              "| planted | tensors | in a group | in a whole-tensor group |", "| --- | ---: | ---: | ---: |"]
    for k, v in s["recall"].items():
        lines.append(f"| {k} | {v['planted']:,} | {v['in_a_group']:,} | {v['in_whole_tensor_group']:,} |")
    lines += ["", "`tuned` tensors lie beyond the tolerance from the base: those of slight fine-tunes that landed just past it can still be within it of another "
              "variant (a near group's kept tensor need not be the base; every merge's distance is measured in section 5), those of `full_tuned` variants "
              "should not be merged; `unrelated` ones were trained from a fresh start. A planted near tensor outside every group is one a crowd of more than 32 "
              "near tensors measured against the crowd's leader, not the base, and found farther than the tolerance from it. "
              "A `rows` group holds tensors with rows equal to another's (units a fine-tune never updated: dead ReLUs, always-zero pixels).", ""]
    sub = r["subset"]
    lines += ["## 2. The subset against analyze", "", f"`{sub['zoo_command']}` against `{sub['analyze_command']}`: {sub['zoo_groups']} and {sub['analyze_groups']} groups, "
              f"{'the same set' if sub['identical'] else 'different'}." + ("" if sub["identical"] else f" Only in zoo: {sub['only_zoo']}; only in analyze: {sub['only_analyze']}."), ""]
    if "analyze_full" in r:
        af = r["analyze_full"]
        lines += [f"Over the whole zoo, `{af['command']}` took {af['wall_seconds']:.1f} s wall, {af['cpu_seconds']:.1f} CPU-seconds, peak {af['peak_rss_mib']:.0f} MiB; "
                  f"its groups are {'the same as' if af['same_groups_as_zoo'] else 'NOT the same as'} the zoo's."
                  + ("" if af["same_groups_as_zoo"] else f" Only in zoo: {af['only_zoo']}; only in analyze: {af['only_analyze']}."), ""]
    lines += ["## 3. Throughput per core", "", "| models | analyze models/s (1 core) | zoo models/s/core (2 workers) | ratio | analyze models/CPU-s | zoo models/CPU-s | ratio |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label in ("subset", "zoo"):
        if label in tp:
            t = tp[label]
            lines.append(f"| {t['models']:,} | {t['analyze_models_per_s_per_core_wall']:.2f} | {t['zoo_models_per_s_per_core_wall']:.2f} | {t['ratio_wall']:.2f} | {t['analyze_models_per_cpu_s']:.2f} | {t['zoo_models_per_cpu_s']:.2f} | {t['ratio_cpu']:.2f} |")
    dp = tp["digest_phase_only"]
    lines += ["", f"The part spread over the workers, the digests, runs at {dp['zoo_models_per_s_per_core_wall']:.1f} models/s/core ({dp['models']:,} files in {dp['seconds']:.1f} s on {WORKERS} workers); "
              f"the join runs after it ({s['join_wall_seconds']:.1f} s of the {s['wall_seconds']:.1f} s), in the client process: the near search's exact distances "
              f"({s['timing'].get('pairs_measured', 0):,} pairs, {s['timing'].get('measure_seconds', 0.0):.1f} s, {s['timing'].get('pairs_on_workers', 0):,} of them sent to the workers: "
              "the cluster is closed after the digests and started again only for a batch of pairs estimated at over 10 s here), then everything else, "
              f"re-reading every tensor a candidate needs from the range of its file its record gives ({s['timing'].get('models_reopened', 0):,} model reopenings; "
              "analyze has the files mapped already). The join, the cluster's start and the client's share of the digests "
              f"(unpickling and storing {s['store']['digest_bytes'] / max(1, s['store']['models']) / 1024:.0f} KiB of digests a model) are what keep the whole scan from the per-core floor: "
              "dividing by 2 cores charges them twice. "
              "For the floor, the scan on 2 cores would have to take 3/4 of the time one analyze process takes; its fixed costs (dask's import, the cluster's start) "
              "and a join that does analyze's own search take more than that here.", "",
              f"Subset runs (wall s): zoo {sub['zoo_wall_seconds']}, analyze {sub['analyze_wall_seconds']}; medians used.", "",
              "## 4. Rescan", "", f"{rs['runs']} rescans with the same store: {rs['all_wall_seconds']} s (median {rs['median_wall_seconds']:.2f} s); "
              f"timing {rs['timing']}; same groups as the first scan: {'yes' if rs['same_groups'] else 'no'}.", "",
              "## 5. Bytes kept: sharescan against chunk dedup", "",
              f"Over the {b['files']:,} readable files ({b['file_bytes'] / MiB:.2f} MiB, {b['tensor_bytes'] / MiB:.2f} MiB of it tensors). sharescan's kept bytes: {b['how']}.", "",
              "| method | kept MiB | kept | lossless |", "| --- | ---: | ---: | --- |",
              f"| sharescan, every relation (near merges included) | {b['sharescan_kept_bytes'] / MiB:.2f} | {b['sharescan_kept_bytes'] / b['file_bytes']:.1%} | no (near merges, costs below) |",
              f"| sharescan, exact groups only | {b['sharescan_kept_exact_only_bytes'] / MiB:.2f} | {b['sharescan_kept_exact_only_bytes'] / b['file_bytes']:.1%} | yes |"]
    for c in b["chunk_dedup"]:
        lines.append(f"| chunk dedup {c['scheme']} ({c['distinct_chunks']:,} distinct of {c['chunks']:,} chunks, {c['seconds']:.1f} s) | {c['kept_bytes'] / MiB:.2f} | {c['kept_fraction']:.1%} | yes |")
    nc = r["near_merge_cost"]
    pm = nc["per_model"]
    lines += ["", f"`{b['command_chunk_dedup']}`. Exact groups alone beat: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in b["exact_only_beats_chunks"].items()) + ".", "",
              "Accuracy cost of the near merges (digits test accuracy on the variant's own shifted task, points; drop = before - after):", "",
              "| | count | max drop | median drop | mean | 99th pct | unchanged / worse / better |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, row in (("per merge (one tensor replaced)", nc["per_merge"]), ("per model (all its near merges)", pm)):
        if row.get("count"):
            lines.append(f"| {label} | {row['count']:,} | {row['max_drop_points']:.2f} | {row['median_drop_points']:.2f} | {row['mean_drop_points']:.3f} | {row['p99_drop_points']:.2f} | {row['unchanged']} / {row['worse']} / {row['better']} |")
    lines += ["", f"Largest relative L2 distance between a variant's tensor and the one it would be replaced by: {nc['largest_rel_distance']:.2e}. "
              f"Lossy rows groups not measured: {nc['lossy_rows_groups_not_measured']}. One test image is 0.28 points (360 images).", "",
              "## 6. On paper: 100,000 models", ""]
    js = r["join_scaling"]
    lines += [f"How the join grows: `{js['command']}`.", "", "| files | wall s | digest s | join s | of it, measuring pairs s | pairs | tensors read |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row['files']:,} | {row['wall_seconds']:.1f} | {row['digest_seconds']:.1f} | {row['join_seconds']:.1f} | {row.get('measure_seconds', 0.0):.1f} | {row.get('pairs_measured', 0):,} | {row['tensors_read']:,} |"
              for row in js["rows"]]
    lines += ["", "From these per-model costs:", ""]
    lines += [f"- {step}" for step in r["projection"]["steps"]]
    lines += ["", "This zoo is one family: every fine-tune is near the same base, so the crowds of near tensors (and the reads that confirm them) grow with the zoo. "
              "A hub of many unrelated bases has many smaller crowds, and the exponents above are an upper estimate for it; the per-model digest and store costs carry over "
              "in proportion to a model's tensor count and bytes."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
