"""The streaming road for image folders (kdbook.data: FileSplit, FolderDataset) against torchvision's ImageFolder with
per-item transforms, on a synthetic JPEG tree of ImageNet's typical sizes that this script writes.

Both roads make the same training view: RandomResizedCrop(224) and a flip, as floats normalised with ImageNet's
statistics, batch 64, the same number of loader workers. torchvision's road does everything per image in the workers
(PIL decode, crop and resize, ToTensor, Normalize) and ships float batches; kdbook's decodes with libjpeg-turbo and
crops and flips uint8 in the workers, ships uint8 batches, and normalises a batch at a time on the device. Two numbers
per road: the loader alone (what a GPU waits for: on a GPU kdbook's normalisation is a few microseconds), and end to end
to a normalised float batch in this process (on a CPU the view runs on the same cores as the workers).

Memory: the listing of the files is what grows with the dataset. torchvision holds it as a list of (str, int), one
Python object per file, which forked workers copy page by page as reading an item changes its reference counts;
kdbook holds one numpy bytes array, which they only read. Measured: the peak summed proportional set size (PSS: shared
pages split between the processes mapping them) of this process and its workers while the workers read every item's
path and label once (an epoch's reads, without decoding), for a listing of the tree's size and one of ImageNet's
1,281,167 files (the tree's files repeated, each path a string of its own).

    python benchmarks/stream.py                          # 2 workers, 2,000 images (written once under --tree)
    python benchmarks/stream.py --workers 8 --images 5000 --json runs/stream.json
"""
import argparse, json, os, threading, time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from kdbook.data import EpochShuffle, FolderDataset, GlobalBatches, View, dataset_info, folder_split, write_jpeg_tree

IMAGENET_TRAIN = 1_281_167


def pss_mb(pid: int) -> float:
    "The proportional set size of a process and its children, in MB (Linux)."
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"): total += int(line.split()[1])
        except OSError: pass
    return total / 1024


def _children(pid: int) -> list:
    try: return [int(c) for t in os.listdir(f"/proc/{pid}/task") for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError: return []


class PeakPss:
    "Sample this process's PSS (with its workers) every 50 ms in a thread; `peak` in MB."
    def __enter__(self):
        self.peak, self.stop = 0.0, threading.Event()
        def watch():
            while not self.stop.is_set():
                self.peak = max(self.peak, pss_mb(os.getpid())); time.sleep(0.05)
        self.thread = threading.Thread(target=watch, daemon=True); self.thread.start()
        return self

    def __exit__(self, *exc): self.stop.set(); self.thread.join()


def torchvision_loader(root: Path, workers: int, batch: int, repeat: int = 1) -> DataLoader:
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder
    info = dataset_info("imagenet")
    ds = ImageFolder(str(root), T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(info.mean, info.std)]))
    ds.samples = ds.imgs = ds.samples * repeat   # ImageNet's listing size, the same files
    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)


def kdbook_loader(root: Path, workers: int, batch: int, repeat: int = 1) -> tuple:
    split = folder_split(root, "benchmark tree")
    if repeat > 1: split.files, split.labels = np.tile(split.files, repeat), split.labels.repeat(repeat)
    ds = FolderDataset(split, 224, "random-resized", seed=0)
    info = dataset_info("imagenet")
    view = View(tuple(info.mean), tuple(info.std), 224, 224)
    return DataLoader(ds, batch_sampler=GlobalBatches(EpochShuffle(len(ds), 0), batch), num_workers=workers), view


class Touch(torch.utils.data.Dataset):
    "Read item i's path and label, nothing else: an epoch's worth of the listing's reads, without decoding."
    def __init__(self, items): self.items = items
    def __len__(self): return len(self.items[1])
    def __getitem__(self, i):
        paths, labels = self.items
        return len(paths[i]) + int(labels[i])


def listing(road: str, root: Path, repeat: int) -> tuple:
    "(paths, labels) of the tree repeated `repeat` times as each road holds them: distinct Python strings in a list, or one numpy bytes array."
    if road == "torchvision":
        from torchvision.datasets import ImageFolder
        samples = ImageFolder(str(root)).samples
        return [os.path.join(os.path.dirname(p), os.path.basename(p)) for _ in range(repeat) for p, _ in samples], \
               [y for _ in range(repeat) for _, y in samples]   # ImageFolder's list of (str, int), one string per file
    split = folder_split(root, "benchmark tree")
    return np.tile(split.files, repeat), split.labels.repeat(repeat)


def touch_every_item(items, workers: int):
    for _ in DataLoader(Touch(items), batch_size=4096, shuffle=True, num_workers=workers): pass


def images_per_second(loader, batches: int, finish) -> float:
    it = iter(loader)
    finish(next(it))
    n, t = 0, time.perf_counter()
    for _ in range(batches):
        n += finish(next(it))
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default="runs/stream-bench-tree", help="where the synthetic JPEG tree is (written when absent)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per road (the median is reported)")
    ap.add_argument("--device", default="cpu", help="where kdbook's view normalises (cuda on a GPU machine)")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() // 2))
    root = Path(a.tree) / f"{a.images}"
    if not (root / "complete").exists():
        t = time.time()
        write_jpeg_tree(root, a.images // 10, classes=10, sizes=(333, 500))   # ImageNet: ~400 x 350 on average
        (root / "complete").write_text("")
        print(f"wrote {a.images} JPEGs under {root} in {time.time() - t:.0f} s")
    (root / "complete").unlink(); sizes = [f.stat().st_size for f in root.rglob("*.JPEG")]; (root / "complete").write_text("")
    print(f"tree: {len(sizes)} JPEGs, {np.mean(sizes) / 1024:.0f} KB on average; {a.workers} workers, batch {a.batch}, device {a.device}")
    dev = torch.device(a.device)
    tv_finish = lambda b: len(b[0].to(dev))
    loader, view = kdbook_loader(root, a.workers, a.batch)
    kd_loader_only = lambda b: len(b["label"])

    def kd_finish(b):   # the batch as the model receives it: normalised floats on the device
        x = view.apply(b["pixels"].to(dev, non_blocking=True))
        if dev.type == "cuda": torch.cuda.synchronize()
        return len(x)
    res = {}
    for name, make, finish in [("torchvision ImageFolder, per-item transforms", lambda: torchvision_loader(root, a.workers, a.batch), tv_finish),
                               ("kdbook streaming road, loader only", lambda: loader, kd_loader_only),
                               ("kdbook streaming road, with its view (normalisation)", lambda: loader, kd_finish)]:
        runs = [images_per_second(make(), a.batches, finish) for _ in range(a.repeats)]
        res[name] = {"images_per_s": float(np.median(runs)), "runs": [round(r, 1) for r in runs]}
        print(f"{name:55s} {np.median(runs):7.0f} images/s  (runs {', '.join(f'{r:.0f}' for r in runs)})", flush=True)
    base = res["torchvision ImageFolder, per-item transforms"]["images_per_s"]
    for k in list(res)[1:]: print(f"  {k}: {res[k]['images_per_s'] / base:.2f}x torchvision's")
    mem = {}
    for label, repeat in [(f"{len(sizes)} files", 1), (f"{IMAGENET_TRAIN:,} files (ImageNet's size)", -(-IMAGENET_TRAIN // len(sizes)))]:
        for road in ("torchvision", "kdbook"):
            before = pss_mb(os.getpid())
            with PeakPss() as peak: touch_every_item(listing(road, root, repeat), a.workers)
            mem[f"{road}, {label}"] = {"peak_pss_mb": round(peak.peak, 1), "before_mb": round(before, 1)}
            print(f"peak PSS {road:12s} {label:30s} {peak.peak:7.0f} MB, {peak.peak - before:+6.0f} MB over the main process before", flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"throughput": res, "memory": mem, "images": len(sizes), "workers": a.workers,
                                            "batch": a.batch, "device": a.device}, indent=1))


if __name__ == "__main__":
    main()
