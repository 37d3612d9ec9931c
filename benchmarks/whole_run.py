"""Whole-run benchmark: one `kdbook distill` cell as a user runs it (a whole process: start-up, data, teacher,
training, evaluation, records, executed notebook), on kdbook's original road and on the fast path, against a plain
fp32 PyTorch loop doing the same work on pre-decoded images.

The cell: Hinton KD, ResNet20 (the committed CPU-scale teacher) -> ResNet14-x0.5, CIFAR-10 (the JPEG tree), a
stratified 10% of the training set, 3 epochs, batch 64, evaluation on the 10,000 test images after every epoch.

- plain: a short script (below, `PLAIN`) in its own process: import torch, load the decoded uint8 arrays
  (`.npy`), build the two networks, then 3 epochs of pad-and-crop + flip on the batch, teacher forward (no grad),
  student forward and backward, 0.1 CE + 0.9 KD (T = 4), SGD; fp32, NCHW. No records, no notebook.
- original: `kdbook distill ... --precision no --extra "{channels_last: false, batched_transforms: false}"`
  (fp32, NCHW, torchvision transforms per image in the loader).
- fast: `kdbook distill ...` with its defaults (precision auto, channels-last, batched transforms on the device).

Each configuration runs `--repeats` times, alternating, after one warm-up of each (page cache, decoded-data
cache); the median wall time is reported and the ratios to the plain loop. Timings are of this machine only:
rerun the baseline in the same call when comparing machines.

    python benchmarks/whole_run.py --data-dir ../shared/data_unpacked   # a folder holding cifar10-jpeg/
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "data" / "teachers" / "resnet20-cifar10-cpu.pt"

PLAIN = r'''
import sys, time, numpy as np, torch, torch.nn.functional as F
from kdbook.models import create_model, load_checkpoint
cache, teacher_ckpt, fraction, epochs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
xtr, ytr = torch.from_numpy(np.load(cache + "/train.npy")), torch.from_numpy(np.load(cache + "/train_labels.npy"))
xte, yte = torch.from_numpy(np.load(cache + "/test.npy")), torch.from_numpy(np.load(cache + "/test_labels.npy"))
keep = torch.cat([torch.nonzero(ytr == c).flatten()[torch.randperm(int((ytr == c).sum()))[:round(fraction * int((ytr == c).sum()))]] for c in range(10)])
xtr, ytr = xtr[keep], ytr[keep]
mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1); std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
teacher, _ = load_checkpoint(teacher_ckpt); teacher.eval().requires_grad_(False)
student = create_model("resnet14_x0.5", 10)
opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
def augment(x):
    b = len(x); p = F.pad(x, (4, 4, 4, 4)); dy, dx = torch.randint(0, 9, (b,)), torch.randint(0, 9, (b,))
    rows = dy[:, None] + torch.arange(32); cols = dx[:, None] + torch.arange(32)
    out = p[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    out = torch.where(torch.rand(b)[:, None, None, None] < 0.5, out.flip(-1), out)
    return ((out.float() / 255 - mean) / std).contiguous()
for epoch in range(epochs):
    student.train()
    for idx in torch.randperm(len(xtr)).split(64):
        x, y = augment(xtr[idx]), ytr[idx]
        with torch.no_grad(): t = teacher(x).logits
        s = student(x).logits
        kd = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean") * 16
        loss = 0.1 * F.cross_entropy(s, y) + 0.9 * kd
        opt.zero_grad(); loss.backward(); opt.step()
    student.eval(); correct = 0
    with torch.no_grad():
        for i in range(0, len(xte), 256):
            correct += (student(((xte[i:i + 256].float() / 255 - mean) / std)).logits.argmax(1) == yte[i:i + 256]).sum().item()
    print(f"epoch {epoch + 1}: test top-1 {100 * correct / len(xte):.2f}", flush=True)
'''


def plain_inputs(data_dir: str, out: Path) -> Path:
    "The decoded arrays the plain loop reads (made once, outside the timing)."
    from kdbook.data import load_split
    import numpy as np
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        s = load_split("cifar10", split, data_dir, download=False)
        np.save(out / f"{split}.npy", s.images.numpy()); np.save(out / f"{split}_labels.npy", s.labels.numpy())
    return out


def timed(cmd: list, env=None) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode: sys.exit(f"failed: {' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="a folder holding cifar10-jpeg/{train,test}")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="", help="also write the timings here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdbook-whole-run-"))
    try:
        arrays = plain_inputs(args.data_dir, work / "arrays")
        script = work / "plain.py"; script.write_text(PLAIN)
        kdbook = [str(Path(sys.executable).parent / "kdbook"), "distill", "--dataset", "cifar10", "--data-dir", args.data_dir,
                  "--teacher-ckpt", str(TEACHER), "--student", "resnet14_x0.5", "--method", "kd", "--epochs", str(args.epochs),
                  "--train-fraction", "0.1", "--quiet"]
        runs = {"plain": lambda k: [sys.executable, str(script), str(arrays), str(TEACHER), "0.1", str(args.epochs)],
                "original": lambda k: kdbook + ["--output-dir", str(work / f"original{k}"), "--precision", "no",
                                                "--extra", "{channels_last: false, batched_transforms: false}"],
                "fast": lambda k: kdbook + ["--output-dir", str(work / f"fast{k}")]}
        times = {name: [] for name in runs}
        for k in range(args.repeats + 1):            # round 0 warms the caches and is not counted
            for name, cmd in runs.items():
                t = timed(cmd(k))
                if k: times[name].append(t)
                print(f"round {k} {name:<9} {t:6.1f} s", flush=True)
            for name in ("original", "fast"): shutil.rmtree(work / f"{name}{k}", ignore_errors=True)
        med = {name: statistics.median(v) for name, v in times.items()}
        print(f"\nmedian wall time of a whole {args.epochs}-epoch run, {args.repeats} rounds ({os.cpu_count()} CPU cores):")
        for name, v in med.items():
            print(f"  {name:<9} {v:6.1f} s  ({v / med['plain']:.2f}x plain)")
        print(f"  original / fast: {med['original'] / med['fast']:.2f}x")
        if args.json: Path(args.json).write_text(json.dumps({"times_s": times, "median_s": med}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
