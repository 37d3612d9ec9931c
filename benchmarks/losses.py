"""Forward + backward time and peak memory of each distillation loss at the papers' settings, and the cost
of each method's full distillation step relative to a KD-only step.

Loss part: the features of resnet32x4 (teacher) and resnet8x4 (student) for a batch of CIFAR-size images are
computed once; the student's become leaf tensors, so the timing covers the loss (and its heads, GNNs, memory
banks) forward and backward, not the networks. IRG-t and MTK pair blocks inside a stage, which resnet8x4 (one
block per stage) does not have: they are measured on IRG's own pair, resnet20 -> resnet14_x0.5. HKD and CRD run
with their paper settings: memory banks of N = 50000 rows and K = 16384 label-aware negatives per sample. FSP's
loss is its initialisation phase's; Rocket's includes its booster (resnet32x4's upper stages). SSKD's networks
see each image in 4 rotations (the features are of 4 x batch views, its teacher head's phase is not timed), so its
full step runs both networks on 4 x batch images.

Full step: teacher forward, student forward and backward, the objective, SGD step, through kdbook's trainer
step (`kdbook.loop.train_epoch`), compared with the same for Hinton KD.

Peak memory is the growth of the process's peak resident memory (CPU) or of the peak CUDA allocation (GPU)
during the measured calls, above what the inputs already use. Each method is measured in a fresh process.

    python benchmarks/losses.py                         # batch 64 and 256, all methods, CPU
    python benchmarks/losses.py --batch 64 --full-step  # also the full-step ratios (slow on a CPU)
"""
import argparse, json, os, statistics, subprocess, sys, time

LOSS_METHODS = ["kd", "irg", "irg_t", "mtk", "gkd", "rkd_d", "ega", "hkd",
                "fitnet", "at", "fsp", "pkt", "sp", "cc", "rkd", "crd", "nce", "ccl", "rocket", "sskd", "frame"]
PAIRS = {"irg_t": ("resnet20", "resnet14_x0.5"), "mtk": ("resnet20", "resnet14_x0.5")}
PARAMS = {"hkd": {},   # paper settings: N = 50000 via num_train, K = 16384 default
          "frame": {"loss": "rkd"}}   # EGA's RKD row: RKD on the 256-d node embeddings, with the frame's teacher head


def _status_mb(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":")) / 1024

def reset_peak_rss() -> float:
    "Give freed heap back to the system, reset the process's peak RSS (VmHWM) and return the current RSS in MiB."
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f: f.write("5")
    return _status_mb("VmRSS")


def measure_loss(method, batch, device, repeats):
    import torch
    from kdbook.core import Features
    from kdbook.distill import DistillSetup, METHODS
    from kdbook.methods.kd import KDLoss
    from kdbook.models import create_model
    from kdbook.loop import keep_freed_memory
    keep_freed_memory()
    torch.manual_seed(0)
    tname, sname = PAIRS.get(method, ("resnet32x4", "resnet8x4"))
    spec = METHODS.get(method)
    hp = spec.make_params(PARAMS.get(method, {}))
    recipe = spec.make_recipe(hp)
    sname = recipe.student(sname)
    teacher, student = create_model(tname, 100).eval().to(device), create_model(sname, 100).to(device)
    views = recipe.joint_views   # SSKD: 4 rotations of each image
    x = torch.randn(batch * views, 3, 32, 32, device=device)
    labels = torch.arange(batch, device=device) % 100
    with torch.no_grad(): t, s0 = teacher(x), student(x)
    s = s0.map(lambda v: v.detach().clone().requires_grad_())
    n_train = 50000
    batch_d = {"label": labels, "index": torch.randperm(n_train, device=device)[:batch]}
    if method == "kd":
        loss_fn, params = (lambda: KDLoss(4.0)(s.logits, t.logits)), []
    else:
        d = spec.distiller(s.shapes(), t.shapes(), DistillSetup(100, n_train, batch, sname, tname), hp).to(device)
        if hasattr(hp, "num_negatives"):   # HKD, CRD: the data side's K indices of other classes per sample
            from kdbook.memory import LabelAwareNegatives
            neg = LabelAwareNegatives(torch.arange(n_train) % 100, hp.num_negatives)
            batch_d["negatives"] = torch.stack([neg(int(i), int(i) % 100)["negatives"] for i in batch_d["index"].cpu()]).to(device)
        # a method whose loss lives in its initialisation phase (FSP) is timed there
        terms = (lambda: d.init_loss(s, t, batch_d)) if recipe.init_epochs and not d(s, t, batch_d) else (lambda: d(s, t, batch_d))
        loss_fn = lambda: sum(terms().values())
    def step():
        loss = loss_fn(); loss.backward()
        for v in (s.logits, s.pooled, *s.stages, *[b for st in s.blocks for b in st]): v.grad = None
    del teacher, student, s0
    if device == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    else: base = reset_peak_rss()
    step()   # warm-up (its peak counts: the first call allocates what the later ones reuse)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); step()
        if device == "cuda": torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device == "cuda" else _status_mb("VmHWM") - base
    return {"method": method, "batch": batch, "pair": f"{tname}->{sname}", "ms": round(1e3 * statistics.median(times), 2),
            "peak_mb": round(max(peak, 0.0), 1)}


def measure_step(method, batch, device, steps):
    "`method` or `kd:<other>` (Hinton KD on the network pair of <other>)."
    method, _, pair_of = method.partition(":")
    import torch
    from kdbook.distill import DistillSetup
    from kdbook.memory import LabelAwareNegatives
    from kdbook.models import create_model
    from kdbook.loop import DistillModule, build_objective, keep_freed_memory, train_epoch
    from kdbook.config import RunConfig, resolve
    from kdbook.train import _fresh_accelerator
    keep_freed_memory()
    torch.manual_seed(0)
    tname, sname = PAIRS.get(pair_of or method, ("resnet32x4", "resnet8x4"))
    r = resolve(RunConfig(dataset="cifar100", model=sname, teacher=tname, teacher_ckpt="untrained", method=method,
                          method_params=PARAMS.get(method, {}), batch_size=batch, device=device), check_data=False)
    cfg, acc = r.cfg, _fresh_accelerator(r)
    teacher, student = create_model(tname, 100).eval().requires_grad_(False).to(acc.device), create_model(cfg.model, 100)
    views = r.recipe.joint_views
    x = torch.randn(batch, views, 3, 32, 32) if views > 1 else torch.randn(batch, 3, 32, 32)   # SSKD: 4 rotations
    plain = x[:2, 0] if views > 1 else x[:2]
    with torch.no_grad(): shapes = (student.eval()(plain).shapes(), teacher(plain.to(acc.device)).shapes())
    module = DistillModule(student, build_objective(r, *shapes, DistillSetup(100, 50000, batch, sname, tname)))
    groups = [{"params": list(student.parameters())}] + (module.objective.distiller.param_groups() if module.objective.distiller else [])
    opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9, weight_decay=5e-4)
    module, opt = acc.prepare(module, opt)
    neg = LabelAwareNegatives(torch.arange(50000) % 100, 16384) if method in ("hkd", "crd") else None
    batches = []
    for _ in range(steps):
        idx = torch.randperm(50000)[:batch]
        b = {"image": x.to(acc.device), "label": (idx % 100).to(acc.device), "index": idx.to(acc.device)}
        if neg: b["negatives"] = torch.stack([neg(int(i), int(i) % 100)["negatives"] for i in idx]).to(acc.device)
        batches.append(b)
    train_epoch(acc, module, teacher, batches[:1], opt, 0, cfg)   # warm-up
    t0 = time.perf_counter(); train_epoch(acc, module, teacher, batches, opt, 0, cfg)
    return {"method": method, "batch": batch, "step_ms": round(1e3 * (time.perf_counter() - t0) / steps, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--methods", nargs="+", default=LOSS_METHODS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full-step", action="store_true", help="also time full distillation steps (batch: the first --batch)")
    ap.add_argument("--steps", type=int, default=3, help="timed full steps per method")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--_one", nargs=3, metavar=("KIND", "METHOD", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:   # a measurement in this fresh process
        kind, method, batch = args._one
        res = measure_loss(method, int(batch), args.device, args.repeats) if kind == "loss" else measure_step(method, int(batch), args.device, args.steps)
        print(json.dumps(res)); return
    def fresh(kind, method, batch):
        out = subprocess.run([sys.executable, __file__, "--_one", kind, method, str(batch), "--device", args.device,
                              "--repeats", str(args.repeats), "--steps", str(args.steps)], capture_output=True, text=True)
        if out.returncode: raise SystemExit(f"{kind} {method} {batch} failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    rows = [fresh("loss", m, b) for b in args.batch for m in args.methods]
    print(f"| method | pair | batch | loss fwd+bwd (ms) | peak extra memory (MiB) |\n|:---|:---|---:|---:|---:|")
    for r in rows: print(f"| {r['method']} | {r['pair']} | {r['batch']} | {r['ms']} | {r['peak_mb']} |")
    steps = []
    if args.full_step:
        steps = [fresh("step", m, args.batch[0]) for m in args.methods]
        kd = {pair: fresh("step", f"kd:{m}" if m in PAIRS else "kd", args.batch[0])["step_ms"]
              for pair, m in {PAIRS.get(m, ("resnet32x4", "resnet8x4")): m for m in args.methods}.items()}
        print(f"\n| method | pair | full step, batch {args.batch[0]} (ms) | KD step, same pair (ms) | ratio |\n|:---|:---|---:|---:|---:|")
        for s in steps:
            pair = PAIRS.get(s["method"], ("resnet32x4", "resnet8x4"))
            s.update(pair="->".join(pair), kd_ms=kd[pair], ratio=round(s["step_ms"] / kd[pair], 3))
            print(f"| {s['method']} | {s['pair']} | {s['step_ms']} | {s['kd_ms']} | {s['ratio']:.3f} |")
    if args.json:
        with open(args.json, "w") as f: json.dump({"losses": rows, "steps": steps, "device": args.device}, f, indent=2)


if __name__ == "__main__":
    main()
