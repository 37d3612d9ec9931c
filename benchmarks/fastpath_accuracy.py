"""Accuracy is unchanged on the fast path: IRG Table 4's row ResNet20 -> ResNet14-x0.5, Baseline and KD, 2 seeds each,
cpu scale (20 epochs on a fresh 10% of CIFAR-10 per seed), the committed fp32 runs against a sweep on the fast path.

The criterion (the issue's): each cell's mean over seeds within the larger of the two standard deviations, or of one
point. The records of the fast-path sweep are copied beside the report with this machine's folders replaced by
placeholders ($DATA_DIR, $OUTPUT_DIR, $KDBOOK), so the committed files name no machine.

    kdbook reproduce irg_table4 --scale cpu --data-dir <dir with cifar10-jpeg/> --only 'r20-r14x0.5/Baseline' \\
        --only 'r20-r14x0.5/KD' --seeds 2 --workers 2 --output-dir runs/fastpath
    python benchmarks/fastpath_accuracy.py runs/fastpath/irg_table4/cpu --out data/reports/irg_table4-cpu-fastpath
"""
import argparse, json, shutil, statistics
from pathlib import Path

from kdbook.results import portable

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "data/reports/irg_table4-cpu/records/irg_table4/cpu"
CELLS = ["r20-r14x0.5/Baseline", "r20-r14x0.5/KD"]


def runs(sweep: Path, cell: str) -> list:
    return [json.loads(p.read_text()) for p in sorted((sweep / cell).glob("seed*/record.json"))]


def describe(recs: list) -> str:
    r = recs[0]
    n = r["environment"].get("numerics")
    threads = f"{n['intra_op_threads']} thread(s) per run" if n else "threads not recorded (1 per run: 2 runs at a time on 2 cores)"
    return (f"precision {r['config']['precision']}, channels_last={r['config'].get('channels_last', False)}, "
            f"batched_transforms={r['config'].get('batched_transforms', False)}, {threads}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="the fast-path sweep folder (<output-dir>/irg_table4/cpu)")
    ap.add_argument("--out", default="", help="write report.md and the portable records here")
    args = ap.parse_args()
    sweep = Path(args.sweep).resolve()
    lines = ["| cell | fp32 road (committed) | fast path | difference of means | allowed | within |", "|:---|---:|---:|---:|---:|:---:|"]
    fast_all = []
    for cell in CELLS:
        old, new = [r["last_top1"] for r in runs(COMMITTED, cell)], [r["last_top1"] for r in runs(sweep, cell)]
        if len(old) < 2 or len(new) < 2: raise SystemExit(f"{cell}: need 2 runs on each side, found {len(old)} and {len(new)}")
        fast_all += runs(sweep, cell)
        (mo, so), (mn, sn) = (statistics.fmean(old), statistics.stdev(old)), (statistics.fmean(new), statistics.stdev(new))
        allowed = max(so, sn, 1.0)
        lines.append(f"| {cell} | {mo:.2f} ± {so:.2f} ({', '.join(f'{v:.2f}' for v in old)}) | {mn:.2f} ± {sn:.2f} "
                     f"({', '.join(f'{v:.2f}' for v in new)}) | {mn - mo:+.2f} | {allowed:.2f} | {'yes' if abs(mn - mo) <= allowed else 'NO'} |")
    old_desc, new_desc = describe(runs(COMMITTED, CELLS[0])), describe(fast_all)
    seconds = [r["timings"]["seconds"] for r in fast_all]
    old_seconds = [r["timings"]["seconds"] for cell in CELLS for r in runs(COMMITTED, cell)]
    text = "\n".join(["# The fast path keeps IRG Table 4's accuracy (cpu scale, last epoch, test top-1 %)", "",
                      f"fp32 road: {old_desc}. Fast path: {new_desc}. Same seeds, same subsets, same teacher "
                      "(`data/teachers/resnet20-cifar10-cpu.pt`), CIFAR-10 as JPEGs, 2 CPU cores (2 runs at a time).", "",
                      *lines, "",
                      f"Training and evaluation time per run (20 epochs, the record's timings): fp32 road "
                      f"{statistics.fmean(old_seconds):.0f} s, fast path {statistics.fmean(seconds):.0f} s.", ""])
    print(text)
    if args.out:
        out = Path(args.out); shutil.rmtree(out / "records", ignore_errors=True)
        anchors = {"$KDBOOK": str(ROOT), "$OUTPUT_DIR": str(sweep.parents[1]),
                   "$DATA_DIR": fast_all[0]["config"]["data_dir"]}
        for cell in CELLS:
            for p in sorted((sweep / cell).glob("seed*/record.json")):
                dest = out / "records" / cell / p.parent.name / "record.json"
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(json.dumps(portable(json.loads(p.read_text()), anchors), indent=2) + "\n")
        (out / "report.md").write_text(text)


if __name__ == "__main__":
    main()
