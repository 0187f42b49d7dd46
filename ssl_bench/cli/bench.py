"""The ``ssl-bench bench`` commands: benchmarks that print numbers (and can write them as JSON)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from ssl_bench.benchmarks import provenance
from ssl_bench.cli.args import load_plugins, path_arg, plugin_arg
from ssl_bench.errors import SSLBenchError

GRID_EXECUTORS = "local:1,local:2,ray:2"  # what bench grid compares by default
TRAIN_STEPS = 5  # bench train's timed steps per pipeline: a median of 5 shrugs off one or two outliers


def one_process(name: str) -> None:
    """Refuse a bench started under torchrun: every rank would time a copy of its own, one thread each, and print
    figures that describe neither one process nor a distributed step."""
    from ssl_bench.train.distributed import Dist

    world = Dist.from_env().world  # as ssl-bench run reads torchrun's environment
    if world > 1:
        raise SSLBenchError(
            f"bench {name} times one process; under torchrun (WORLD_SIZE={world}) every rank would time its own "
            "copy: run it without torchrun"
        )


def cmd_bench_augment(args: argparse.Namespace) -> int:
    from ssl_bench.atomic_write import atomic_write_text
    from ssl_bench.benchmarks.augment import bench_augment
    from ssl_bench.devices import resolve_device
    from ssl_bench.writable import check_output_file

    one_process("augment")
    device = resolve_device(args.device, "--device")
    if args.batch < 1:
        raise SSLBenchError(f"--batch must be >= 1, got {args.batch}")
    if not 8 <= args.size <= 512:
        raise SSLBenchError(f"--size must be between 8 and 512, got {args.size}")
    if not 0 < args.seconds < 3600:  # also refuses nan; inf would time forever
        raise SSLBenchError(f"--seconds must be more than 0 and less than 3600, got {args.seconds}")
    check_output_file(args.json, "--json")
    rows = bench_augment(device, batch=args.batch, size=args.size, min_seconds=args.seconds)
    print(
        f"augmentation throughput, batches of {args.batch} {args.size}x{args.size} RGB uint8 images "
        f"(batched on {device}, PIL per image on the CPU, {rows[0]['threads']} torch threads)"
    )
    print(f"{'policy':<12} {'batched img/s':>14} {'PIL img/s':>12} {'ratio':>8}")
    for r in rows:
        print(f"{r['policy']:<12} {r['batched_img_s']:>14,.0f} {r['pil_img_s']:>12,.0f} {r['ratio']:>7.1f}x")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(rows, indent=1) + "\n")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    import copy
    import tempfile

    from ssl_bench.atomic_write import atomic_write_text
    from ssl_bench.benchmarks.settle import rule_of_flag
    from ssl_bench.benchmarks.train import DEFAULT_RECIPE, bench_algorithms, bench_train
    from ssl_bench.devices import resolve_device
    from ssl_bench.plan import plan, recipe_from_dict
    from ssl_bench.recipe_files import apply_overrides, read_recipe
    from ssl_bench.writable import check_output_file

    one_process("train")
    load_plugins(args)
    resolve_device(args.device, "--device")  # refused in the words the user typed, before train.device takes it
    rule = rule_of_flag(args.warmup)
    for flag, value, least in (("--steps", args.steps, 1), ("--workers", args.workers, 0)):
        if value < least:
            raise SSLBenchError(f"{flag} must be >= {least}, got {value}")
    names = [n.strip() for n in args.algorithm.split(",")] if args.algorithm else [None]
    if "" in names:
        raise SSLBenchError(f"--algorithm {args.algorithm!r} has an empty name; give NAME or NAME,NAME,...")
    if len(names) > 1 and args.pipeline != "ours":
        raise SSLBenchError(
            "several --algorithm names are timed against the first with --pipeline ours only (the reference "
            "pipeline times one algorithm): add --pipeline ours"
        )
    check_output_file(args.json, "--json")  # before minutes of timing, not after
    recipe_values = read_recipe(args.recipe) if args.recipe else copy.deepcopy(DEFAULT_RECIPE)
    runs = []
    for name in names:  # every algorithm validated like a run before any process starts
        values = copy.deepcopy(recipe_values)
        if name:
            values["algorithm"] = {"name": name}
        if args.model:
            values.setdefault("model", {})["name"] = args.model
        overrides = [*(args.set or []), f"train.device={json.dumps(args.device)}", "train.progress=false"]
        recipe = recipe_from_dict(apply_overrides(values, overrides))
        with tempfile.TemporaryDirectory() as nowhere:  # no manifest is read or written
            runs.append(plan(recipe, Path(nowhere))[0].run)
    plugins = args.plugin + recipe.plugins
    if len(runs) > 1:
        out = bench_algorithms(runs, plugins, args.steps, rule, log=progress_line)
        print_algorithms(out, rule)
    else:
        reference = args.pipeline == "reference"
        out = bench_train(runs[0], plugins, args.steps, rule, reference, args.workers, log=progress_line)
        print_pipelines(out, rule)
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({**out, **provenance()}, indent=1) + "\n")
    return 0


def print_header(out: dict, what: str, rule, how: str = "") -> None:
    cpu = f" ({machine()})" if out["device"] == "cpu" else ""
    print(
        f"bench train: {what} on {out['dataset']}, {out['model']}-{out['model_width']}, batch {out['batch_size']}, "
        f"on {out['device']}{cpu}; median of {out['steps']} timed steps after warm-up, one step at a time in turns"
    )
    if how:
        print(how)
    print(f"warm-up, {rule.describe()}")


def caveat(rows: list[dict]) -> str:
    """', NOT steady state (reference not settled after 20 warm-up steps)' for the rows that did not settle."""
    words = [r["warmup"].rsplit(" (last", 1)[0] for r in rows if r["settled"] is not True]
    return f", NOT steady state ({'; '.join(words)})" if words else ""


def print_pipelines(out: dict, rule) -> None:
    from ssl_bench.benchmarks.pipelines import PHASES

    first = next(iter(out["pipelines"].values()))
    print_header(out, f"{out['algorithm']} ({first['images_per_step']} images per step)", rule)
    for r in out["pipelines"].values():
        print(f"  {r['warmup']}")
    phases = " ".join(f"{p + ' ms':>10}" for p in PHASES)
    header = f"{'pipeline':<10} {'steps/s':>8} {'images/s':>9} {'ms/step':>9} {phases}"
    print(f"{header} {'peak MB':>8} {'faults/step':>11} {'sys %':>6}  switches")
    for name, r in out["pipelines"].items():
        switches = ", ".join(f"{k} {v}" for k, v in r["speed"].items())
        print(
            f"{name:<10} {r['steps_per_s']:>8.3f} {r['images_per_s']:>9,.0f} {r['ms_per_step']:>9,.1f} "
            + " ".join(f"{r['ms'][p]:>10,.1f}" for p in PHASES)
            + f" {r['peak_mb']:>8,.0f} {r['minor_faults_per_step']:>11,.0f} {r['sys_pct']:>6.1f}  {switches}"
        )
    if "ratio" in out:
        print(f"ratio ours / reference (steps/s): {out['ratio']:.2f}x{caveat(list(out['pipelines'].values()))}")


def print_algorithms(out: dict, rule) -> None:
    how = (
        "each other algorithm's process comes up in turn beside the baseline's; both are warmed up and timed in that "
        "turn; ratio = its ms/step / the baseline's ms/step in the same turn (above 1: slower than the baseline)"
    )
    print_header(out, f"algorithms against {out['baseline']} (the baseline)", rule, how)
    columns = f"{'algorithm':<14} {'images/step':>11} {'ms/step':>9} {'baseline ms/step':>16} {'ratio':>7}"
    print(f"{columns}  warm-up (algorithm / baseline)")
    for t in out["turns"]:
        mine, base = t["pipelines"]["algorithm"], t["pipelines"]["baseline"]
        warm = " / ".join(f"{r['warmup_state']} after {r['warmup_steps']}" for r in (mine, base))
        print(
            f"{t['algorithm']:<14} {mine['images_per_step']:>11,} {t['ms_per_step']:>9,.1f} "
            f"{t['baseline_ms_per_step']:>16,.1f} {t['ratio']:>6.2f}x{' ' if t['steady'] else '*'} {warm}"
        )
    for t in out["turns"]:
        if not t["steady"]:
            notes = [r["warmup"] for r in t["pipelines"].values() if r["settled"] is not True]
            print(f"* NOT steady state in the {t['algorithm']} turn: {'; '.join(notes)}")


def progress_line(line: str) -> None:
    """Progress of a bench on stderr, so that stdout holds only its figures."""
    print(f"bench train: {line}", file=sys.stderr, flush=True)


def machine() -> str:
    """'AMD EPYC, 2 cores, cpu family 25 model 1 stepping 1, AVX2': the CPU that figures printed here come from."""
    from ssl_bench.results.provenance import host_info

    h = host_info()
    return ", ".join(str(x) for x in (h["cpu"], f"{h['cores']} cores", h.get("cpu_id"), h["cpu_capability"]) if x)


def cmd_bench_grid(args: argparse.Namespace) -> int:
    import importlib.util
    import tempfile

    from ssl_bench.atomic_write import atomic_write_text
    from ssl_bench.benchmarks.grid import bench_grid, parse_variants
    from ssl_bench.executor.options import EXECUTORS
    from ssl_bench.plan import load_recipe, plan
    from ssl_bench.writable import check_output_file

    one_process("grid")
    variants = parse_variants(args.executors, EXECUTORS)
    if args.rounds < 1:
        raise SSLBenchError(f"--rounds must be >= 1, got {args.rounds}")
    if any(v.executor == "ray" for v in variants) and importlib.util.find_spec("ray") is None:
        raise SSLBenchError("--executors names ray, which is not installed: pip install 'ssl_bench[ray]'")
    check_output_file(args.json, "--json")
    load_plugins(args)
    with tempfile.TemporaryDirectory() as nowhere:  # every recipe validated, and its data loaded, before any timing
        n_runs = sum(len(plan(load_recipe(r, args.set), Path(nowhere))) for r in args.recipe)
    print(
        f"bench grid: {' '.join(map(str, args.recipe))}{''.join(f' --set {o}' for o in args.set or [])}: {n_runs} "
        f"run{'s' if n_runs != 1 else ''}; each executor trains them in a fresh ssl-bench run into an empty "
        f"results directory, then reruns them (all skipped); {args.rounds} round(s) in turns, on {machine()}"
    )
    out = bench_grid(args.recipe, args.set or [], args.plugin, variants, n_runs, args.rounds, args.address)
    print(f"{'executor':<10} {'wall s (median)':>16} {'busy CPU s':>11} {'CPU s / cores':>14} {'rerun s':>8} "
          f"{'speed-up':>9}  (vs {variants[0].name}; busy CPU is this whole machine's"
          f"{', not the cluster' if args.address else ''})")  # fmt: skip
    for v in out["variants"]:
        cpu = v["busy_cpu_median_s"]
        bound = "n/a" if cpu is None else f"{cpu / out['cores']:.2f}"
        print(
            f"{v['executor'] + ':' + str(v['workers']):<10} {v['wall_median_s']:>16.2f} "
            f"{'n/a' if cpu is None else f'{cpu:.2f}':>11} {bound:>14} {statistics.median(v['rerun_s']):>8.2f} "
            f"{v['speedup_vs_first']:>8.2f}x"
        )
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({**out, **provenance()}, indent=1) + "\n")
    return 0


def add_bench_parsers(sub: argparse._SubParsersAction) -> None:
    from ssl_bench.benchmarks.settle import SettleRule  # no torch: --help stays quick

    rule = SettleRule()
    p = sub.add_parser("bench", help="benchmarks that print numbers (bench augment, bench train, bench grid)")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser(
        "augment",
        help="images/s of weak, randaugment and ctaugment: batched vs per-image PIL",
        description="Images/s of the batched weak, randaugment and ctaugment policies next to a "
        "per-image PIL pipeline doing the same work, measured in the same run.",
    )
    b.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    b.add_argument("--json", type=path_arg, help="also write the results as a JSON list to this file")
    b.add_argument("--batch", type=int, default=448, help="images per batch (default 448, one FixMatch step)")
    b.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    b.add_argument("--seconds", type=float, default=2.0, help="minimum timing per measurement (default 2)")
    b.set_defaults(func=cmd_bench_augment)
    b = bench.add_parser(
        "train",
        help="steps/s of the trainer's real training step (default: FixMatch, WRN-28-2, 64 + 7x64 images of 32x32)",
        description="Time real training steps of the project's trainer (the code path of ssl-bench run) after "
        "warm-up (see --warmup): steps/s, images/s, ms per step split into data/augmentation, CTAugment probes "
        "and model/optimizer, peak memory, page faults. Without RECIPE: FixMatch, WRN-28-2, batch 64, mu = 7, "
        "RandAugment on random 32x32 RGB images (the synthetic dataset). Unless --pipeline ours, the same "
        "algorithm step is also fed the way today's ports feed it (DataLoader workers applying per-image PIL "
        "augmentation, fp32, NCHW, no compile), in turns with ours, and the ratio is printed. With several "
        "--algorithm names, each one's step is timed against the first's instead.",
    )
    b.add_argument("recipe", nargs="?", type=Path, help="time the first run of this recipe instead of the default")
    b.add_argument(
        "--algorithm",
        metavar="NAME[,NAME...]",
        help="replace the recipe's algorithm (with its default config); several names (with --pipeline ours): time "
        "each one's step against the first's, the baseline, in turns, e.g. fixmatch,mixmatch,remixmatch",
    )
    b.add_argument("--model", help="replace the recipe's backbone, e.g. small_cnn, wrn28, timm:resnet18")
    b.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    b.add_argument("--steps", type=int, default=TRAIN_STEPS, help=f"timed steps per pipeline (default {TRAIN_STEPS})")
    b.add_argument(
        "--warmup",
        default="auto",
        metavar="auto|N",
        help="untimed steps per pipeline first, in turns. auto (default): until each pipeline's last "
        f"{rule.window} step times lie within ±{100 * rule.band:g} %% of their median, at least {rule.min_steps} "
        f"and at most {rule.max_steps} steps; a pipeline still outside the band then is reported as not settled. "
        "N: exactly N steps, after which the same band is only reported (settled or not), never waited for",
    )
    b.add_argument(
        "--pipeline",
        choices=["reference", "ours"],
        default="reference",
        help="reference (default): ours and the peer-style DataLoader + PIL pipeline in turns, and their ratio; "
        "ours: ours only (required with several --algorithm names)",
    )
    b.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers of the reference")
    b.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value")
    b.add_argument("--json", type=path_arg, help="also write the results as JSON to this file")
    plugin_arg(b)
    b.set_defaults(func=cmd_bench_train)
    b = bench.add_parser(
        "grid",
        help="wall time of one grid under several executors (local workers, Ray), in turns",
        description="Train the grid of RECIPE(s) under each executor of --executors: a fresh ssl-bench run into "
        "an empty results directory, then the same command again (every run skipped), the executors in turns for "
        "--rounds rounds. Prints the wall time, the CPU time the whole machine spent busy (Linux; it counts Ray's "
        "own processes too) and that divided by the cores, which no executor can beat.",
    )
    b.add_argument("recipe", nargs="+", type=Path, help="recipe file(s), e.g. recipes/smoke.toml")
    b.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value")
    b.add_argument(
        "--executors",
        default=GRID_EXECUTORS,
        help=f"EXECUTOR:WORKERS,... to compare, the first the baseline of the speed-up (default {GRID_EXECUTORS})",
    )
    b.add_argument("--rounds", type=int, default=2, help="times each executor trains the grid (default 2)")
    b.add_argument(
        "--address",
        help="ray: the cluster to submit to (default: a local Ray started by each run); busy CPU then counts this "
        "machine only",
    )
    b.add_argument("--json", type=path_arg, help="also write the results as JSON to this file")
    plugin_arg(b)
    b.set_defaults(func=cmd_bench_grid)
