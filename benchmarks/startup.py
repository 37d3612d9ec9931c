"""Start-up: how long `kdbook --help`, `kdbook list`, an argument error and a run's set-up take, as whole processes.

A run's overhead before its first step is the time from starting `kdbook distill` to the moment its record appears
in the run folder: the trainer writes it after the data, networks, teacher, optimizer and accelerator are ready and
just before the first step. The cell is IRG Table 4's ResNet20 -> ResNet14-x0.5 KD run on CIFAR-10 (10% subset),
with the decoded-data cache warm (one run first fills it). Medians of `--repeats` tries.

    python benchmarks/startup.py --data-dir <a folder holding cifar10-jpeg/>
"""
import argparse, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KDBOOK = str(Path(sys.executable).parent / "kdbook")


def wall(args: list) -> float:
    t = time.perf_counter()
    subprocess.run([KDBOOK, *args], capture_output=True)
    return time.perf_counter() - t


def until_first_step(args: list, out: Path) -> tuple:
    "Seconds until the record appears (the first step starts), and the whole process's seconds."
    t = time.perf_counter()
    proc = subprocess.Popen([KDBOOK, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while proc.poll() is None:
        if first is None and any(out.glob("*/record.json")): first = time.perf_counter() - t
        time.sleep(0.01)
    if proc.returncode: sys.exit(f"the run failed: {' '.join(args)}")
    return first, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quick = {"kdbook --help": ["--help"], "kdbook list methods": ["list", "methods"], "kdbook distill --help": ["distill", "--help"],
             "argument error (kdbook distill --lr abc)": ["distill", "--lr", "abc"],
             "bad dataset (kdbook distill --dataset cifar11)": ["distill", "--dataset", "cifar11"]}
    for name, a in quick.items():
        print(f"{name:<48} {statistics.median(wall(a) for _ in range(args.repeats)):5.2f} s", flush=True)
    run = ["distill", "--dataset", "cifar10", "--data-dir", args.data_dir, "--teacher-ckpt", str(ROOT / "data/teachers/resnet20-cifar10-cpu.pt"),
           "--student", "resnet14_x0.5", "--method", "kd", "--epochs", "1", "--train-fraction", "0.1", "--quiet",
           "--extra", "{max_steps_per_epoch: 1}"]
    firsts, totals = [], []
    for k in range(args.repeats + 1):   # the first fills the decoded-data cache
        with tempfile.TemporaryDirectory() as d:
            first, total = until_first_step(run + ["--output-dir", d], Path(d))
        if k: firsts.append(first); totals.append(total)
    print(f"{'a run, before its first step':<48} {statistics.median(firsts):5.2f} s")
    print(f"{'a run of one step and one evaluation, whole':<48} {statistics.median(totals):5.2f} s")


if __name__ == "__main__":
    main()
