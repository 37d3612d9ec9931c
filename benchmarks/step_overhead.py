"""Time one distillation step in kdbook against a plain PyTorch loop over the same models and batch.

A step is: teacher forward (no grad), student forward and backward, 0.1*CE + 0.9*KD (T=4), SGD step.
kdbook's side is its real training path: `kdbook.loop.train_epoch` over an accelerate-prepared
`DistillModule` (objective, loss-term bookkeeping, NaN checks every `log_every` steps). The plain side is
the loop one would write by hand. Both start from identical weights and see identical batches. They run
in back-to-back pairs of rounds (order alternating), and the reported ratio is the median of the
per-pair ratios, which cancels the slow drift of a shared machine; per-step medians are given too.
As `fit` does, the benchmark first asks glibc to keep freed memory (`kdbook.loop.keep_freed_memory`);
the setting is process-wide, so both sides share it. `--no-mallopt` shows the default allocator, under
which the plain loop happens to be faster only because it keeps the previous step's activations alive.

    python benchmarks/step_overhead.py                        # resnet20 -> resnet8, batch 64, CPU
    python benchmarks/step_overhead.py --teacher resnet32x4 --student resnet8x4 --device cuda
"""
import argparse, copy, json, statistics, time

import torch
import torch.nn.functional as F

from kdbook.distill import DistillSetup
from kdbook.models import create_model
from kdbook.loop import DistillModule, build_objective, keep_freed_memory, train_epoch
from kdbook.config import RunConfig, resolve
from kdbook.train import _fresh_accelerator


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="resnet20")
    ap.add_argument("--student", default="resnet8")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed round (one kdbook 'epoch')")
    ap.add_argument("--rounds", type=int, default=15, help="pairs of rounds (the first pair is warm-up)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-mallopt", action="store_true",
                    help="leave glibc's default trimming on (kdbook.train.fit turns it off; both sides share the setting)")
    args = ap.parse_args()
    mallopt = False if args.no_mallopt else keep_freed_memory()

    torch.manual_seed(0)
    r = resolve(RunConfig(dataset="synthetic", model=args.student, teacher=args.teacher, teacher_ckpt="untrained",
                          method="kd", batch_size=args.batch_size, device=args.device, log_every=50), check_data=False)
    cfg, acc = r.cfg, _fresh_accelerator(r)
    dev = acc.device
    teacher = create_model(args.teacher, args.classes).eval().requires_grad_(False).to(dev)
    student = create_model(args.student, args.classes)
    plain_student = copy.deepcopy(student).to(dev)
    x = torch.randn(args.batch_size, 3, 32, 32)
    batches = [{"image": x[torch.randperm(len(x))].to(dev), "label": torch.randint(0, args.classes, (len(x),), device=dev),
                "index": torch.arange(len(x), device=dev)} for _ in range(args.steps)]

    with torch.no_grad():
        shapes = (student.eval()(x[:2]).shapes(), teacher(x[:2].to(dev)).shapes())
    objective = build_objective(r, *shapes, DistillSetup(args.classes, 0, args.batch_size))
    module = DistillModule(student, objective)
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    module, opt = acc.prepare(module, opt)
    plain_opt = torch.optim.SGD(plain_student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def kdbook_round():
        train_epoch(acc, module, teacher, batches, opt, 0, cfg)

    def plain_round():
        plain_student.train()
        for b in batches:
            with torch.no_grad():
                t = teacher(b["image"]).logits
            s = plain_student(b["image"]).logits
            kd = F.kl_div(F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1), log_target=True, reduction="batchmean") * 16
            loss = 0.1 * F.cross_entropy(s, b["label"]) + 0.9 * kd
            loss.backward()
            plain_opt.step()
            plain_opt.zero_grad(set_to_none=True)

    def timed(fn):
        if dev.type == "cuda": torch.cuda.synchronize()
        t0 = time.perf_counter(); fn()
        if dev.type == "cuda": torch.cuda.synchronize()
        return (time.perf_counter() - t0) / args.steps

    times, ratios = {"kdbook": [], "plain": []}, []
    for r in range(args.rounds):
        pair = {}
        for name, fn in (("kdbook", kdbook_round), ("plain", plain_round)) if r % 2 == 0 else (("plain", plain_round), ("kdbook", kdbook_round)):
            pair[name] = timed(fn)
            times[name].append(pair[name])
        if r: ratios.append(pair["kdbook"] / pair["plain"])   # pair 0 is warm-up
    q = statistics.quantiles(ratios, n=4)
    result = {"teacher": args.teacher, "student": args.student, "batch": args.batch_size, "device": str(dev),
              "threads": torch.get_num_threads(), "keep_freed_memory": mallopt, "steps_per_round": args.steps, "pairs": len(ratios),
              "kdbook_ms_per_step": round(1e3 * statistics.median(times["kdbook"][1:]), 2),
              "plain_ms_per_step": round(1e3 * statistics.median(times["plain"][1:]), 2),
              "ratio_median": round(statistics.median(ratios), 4), "ratio_quartiles": [round(q[0], 4), round(q[2], 4)]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
