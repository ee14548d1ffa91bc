"""Whole-command benchmark: ``splitmesh mesh up train`` from the shell prompt to the prompt.

What a user waits for besides training: starting one node process per domain (until each
one's gRPC health service says SERVING), key alignment, preparation, saving and publishing
the parts, stopping the nodes. Each run is a fresh ``splitmesh`` process; the first run of
a mode creates the mesh's certificates, later ones reuse them (as a team's second run
would). Reported per run: wall seconds, seconds until every node served, preparation
(alignment included) and training seconds as the run itself measured them, the rest
(wall - training), and the peak RSS of the coordinator and of the largest node.

    python benchmarks/startup.py --out benchmarks/results
    python benchmarks/startup.py --mesh examples/credit/mesh.yaml --repeats 1 --out /tmp/b
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("label-sharing", "label-preserving")
# the splitmesh command as a user runs it, telling its own peak RSS (MB) on stderr at exit
_RUN = (
    "import atexit, runpy, sys\n"
    "from splitmesh.memory import peak_rss_mb\n"
    "atexit.register(lambda: print('PEAK_MB', peak_rss_mb(), file=sys.stderr))\n"
    "sys.argv = ['splitmesh', *sys.argv[1:]]\n"
    "runpy.run_module('splitmesh.cli', run_name='__main__')\n"
)


def one_run(mesh: Path, mode: str, work: Path, epochs: int) -> dict:
    out = work / f"out-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable, "-c", _RUN, "mesh", "up", "--workdir", str(work / "mesh"),
        "train", str(mesh), "--out", str(out), "--mode", mode, "--no-progress",
        "--set", f"training.epochs={epochs}", "--set", "training.patience=null",
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    peak = re.findall(r"PEAK_MB ([0-9.]+)", done.stderr)
    serving = re.search(r"all nodes serving after ([0-9.]+) s", done.stdout)
    run = json.loads((out / "results.json").read_text())["runs"][0]
    nodes = []
    for log in (work / "mesh" / "logs").glob("*.log"):
        peaks = re.findall(r"peak RSS (\d+) MB", log.read_text())
        nodes += [int(p) for p in peaks[-1:]]
    metric = run["metrics"].get("average_precision", run["metrics"].get("accuracy"))
    return {
        "mode": mode,
        "wall_s": wall,
        "nodes_serving_s": float(serving.group(1)) if serving else None,
        "prepare_s": run["prepare_seconds"],
        "train_s": run["train_seconds"],
        "seconds_per_epoch": run["seconds_per_epoch"],
        "other_s": wall - run["train_seconds"],
        "coordinator_peak_mb": float(peak[-1]) if peak else None,
        "largest_node_peak_mb": max(nodes) if nodes else None,
        "test_metric": metric,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mesh", type=Path, default=Path("examples/fraud/mesh.yaml"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, Console().width))  # uncut when not a terminal
    default = Path("examples/fraud/mesh.yaml")
    data = Path(__file__).resolve().parents[2] / "shared/data/creditcard/creditcard_1722.csv"
    if args.mesh == default and not data.is_file():
        console.print(f"skipped: {default} reads {data}, which is not on this machine")
        return
    work = Path(tempfile.mkdtemp(prefix="splitmesh-startup-"))
    rows = []
    for mode in MODES:
        for i in range(args.repeats):
            console.print(f"{mode}, run {i + 1} of {args.repeats} ...", highlight=False)
            rows.append({"repeat": i + 1, **one_run(args.mesh.resolve(), mode, work, args.epochs)})

    table = Table(title=f"splitmesh mesh up train {args.mesh} ({args.epochs} epochs)")
    cols = ["mode", "repeat", "wall_s", "nodes_serving_s", "prepare_s", "train_s", "other_s",
            "coordinator_peak_mb", "largest_node_peak_mb"]  # fmt: skip
    heads = ["mode", "run", "wall s", "serving s", "prepare s", "train s", "wall-train s",
             "coord MB", "node MB"]  # fmt: skip
    for c in heads:
        table.add_column(c, justify="left" if c == "mode" else "right", no_wrap=True)
    for r in rows:
        table.add_row(*[f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    console.print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(
        json.dumps({"mesh": str(args.mesh), "epochs": args.epochs, "runs": rows}, indent=2)
    )
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    (args.out / "startup.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {args.out}/startup.json and startup.md")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
