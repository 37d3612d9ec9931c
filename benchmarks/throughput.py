"""Training throughput (images/s) of whole kdbook steps, on kdbook's real path (`kdbook.train.fit`), per method,
batch size and road, with the peak GPU memory; and, from the measured KD throughput, the time of a paper-length run.

Each measurement is one `fit` of 2 short epochs on in-memory CIFAR-sized data (32x32, 100 classes, 20,000 training
images: enough for HKD's and CRD's 16,384 negatives) with an untrained teacher; the throughput is that of epoch 2
(epoch 1 warms up kernels and allocators). Roads:

- original: fp32, NCHW, torchvision transforms per image in the loader (kdbook before the fast path);
- fast-bf16 / fast-fp16: mixed precision, channels-last, the papers' transforms on the device a batch at a time.

    python benchmarks/throughput.py --device cuda                        # resnet32x4 -> resnet8x4: KD, CRD, HKD at 64 and 256
    python benchmarks/throughput.py --device cpu --steps 4 --methods kd  # a quick look on a CPU (fp16 needs a GPU)
"""
import argparse, json, statistics, tempfile, time
from pathlib import Path

import torch

from kdbook.data import DATASETS, DatasetInfo, Split
from kdbook.config import RunConfig
from kdbook.train import fit

ROADS = {"original": dict(precision="no", channels_last=False, batched_transforms=False),
         "fast-bf16": dict(precision="bf16", channels_last=True, batched_transforms=True),
         "fast-fp16": dict(precision="fp16", channels_last=True, batched_transforms=True)}


@DATASETS.register("bench32", info=DatasetInfo(100, 32, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), "CIFAR-100's constants"))
def bench32(root: Path, split: str, download: bool = True) -> Split:
    "Random 32x32 images with CIFAR-100's shape and class count (for timing only): 20,000 train / 1,000 test."
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 20000 if split == "train" else 1000
    return Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 100,
                 [f"c{i}" for i in range(100)], "random (benchmark)")


def measure(device: str, teacher: str, student: str, method: str, batch: int, road: str, steps: int) -> dict:
    cuda = device == "cuda"
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        rec = fit(RunConfig(dataset="bench32", model=student, teacher=teacher, teacher_ckpt="untrained", method=method,
                            batch_size=batch, epochs=2, max_steps_per_epoch=steps, eval_every=2, device=device, output_dir=out,
                            log_every=steps, **ROADS[road]), quiet=True)
    e1, e2 = rec["epochs"]
    return {"method": method, "batch": batch, "road": road, "img_per_s": steps * batch / e2["train_seconds"],
            "eval_img_per_s": 1000 / e2["eval_seconds"] if e2.get("eval_seconds") else None,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None, "compute_dtype": rec["machine"]["compute_dtype"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--teacher", default="resnet32x4")
    ap.add_argument("--student", default="resnet8x4")
    ap.add_argument("--methods", nargs="+", default=["kd", "crd", "hkd"])
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--roads", nargs="+", default=None, help=f"of {list(ROADS)} (default: all the device has)")
    ap.add_argument("--steps", type=int, default=40, help="steps per epoch (epoch 2 is timed)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    roads = args.roads or [r for r in ROADS if args.device == "cuda" or r != "fast-fp16"]
    rows = []
    for method in args.methods:
        for batch in args.batches:
            for road in roads:
                r = measure(args.device, args.teacher, args.student, method, batch, road, args.steps)
                rows.append(r)
                peak = f"{r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else "-"
                print(f"{method:<5} batch {batch:<4} {road:<10} {r['img_per_s']:9.0f} img/s  peak {peak}  ({r['compute_dtype']})", flush=True)
    print("\nspeed-up of the fast path over the original road:")
    for method in args.methods:
        for batch in args.batches:
            base = next(r["img_per_s"] for r in rows if (r["method"], r["batch"], r["road"]) == (method, batch, "original"))
            for r in rows:
                if (r["method"], r["batch"]) == (method, batch) and r["road"] != "original":
                    print(f"  {method:<5} batch {batch:<4} {r['road']:<10} {r['img_per_s'] / base:5.2f}x")
    kd = [r for r in rows if r["method"] == "kd" and r["batch"] == 64 and r["road"] != "original"]
    if kd:   # the recipe: 240 epochs of 50,000 images at batch 64, each followed by an evaluation of 10,000
        best = max(kd, key=lambda r: r["img_per_s"])
        train, evaluation = 50000 / best["img_per_s"], 10000 / best["eval_img_per_s"] if best["eval_img_per_s"] else 0.0
        print(f"\n240 epochs of {args.teacher} -> {args.student} KD on CIFAR-100 at batch 64 ({best['road']}): "
              f"{240 * (train + evaluation) / 60:.1f} min ({train:.1f} s training + {evaluation:.1f} s evaluation per epoch)")
    if args.json: Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
