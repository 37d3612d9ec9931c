#!/usr/bin/env bash
# The fast path, the streaming road and IRG's ImageNet rows on one GPU, in under 8 minutes. Run it from the repository root on a machine with a CUDA GPU:
#
#   bash benchmarks/gpu_check.sh                 # writes its results under $OUT (default runs/gpu_check)
#   DEVICE=cpu STEPS=3 bash benchmarks/gpu_check.sh   # the same steps, tiny, on a CPU: a check of the script itself
#
# 1. step throughput (img/s) and peak memory of resnet32x4 -> resnet8x4 with KD, CRD and HKD at batch 64 and 256,
#    original road (fp32, NCHW, per-image transforms) against the fast path in bf16 and fp16; from the KD
#    throughput, the time of a 240-epoch CIFAR-100 run (benchmarks/throughput.py);
# 2. a 2-epoch CIFAR-10 distillation killed after its first epoch and resumed, beside an uninterrupted one;
# 3. the streaming road (ImageNet-sized JPEGs decoded and cropped in 8 loader workers, normalised on the GPU) against
#    torchvision's ImageFolder, images/s and peak memory (benchmarks/stream.py, 1,000 synthetic JPEGs it writes);
# 4. IRG Table 4's ImageNet rows at the smoke scale on the GPU: ResNet101-v2 (timm) -> ResNet18 (torchvision), every
#    column, on the streamed synthetic JPEG tree (needs timm; a failure here is reported, the script goes on).
# It needs torch, torchvision, accelerate, numpy and pyyaml (no papermill: it calls kdbook.train directly). CIFAR-10
# is read from $DATA (a folder holding cifar10-jpeg/), or unpacked from .gpu_data/cifar10-jpeg.tar.gz when that is
# there; without either, step 2 uses the synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}; DEVICE=${DEVICE:-cuda}; STEPS=${STEPS:-40}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KDBOOK_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

$PY - <<'EOF' | tee "$OUT/machine.txt"
import platform, torch
print("torch", torch.__version__, "| cuda", torch.version.cuda, "| python", platform.python_version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", f"{p.multi_processor_count} SMs", "| bf16", torch.cuda.is_bf16_supported())
EOF

echo "== 1. throughput"
$PY benchmarks/throughput.py --device "$DEVICE" --steps "$STEPS" --json "$OUT/throughput.json" 2>&1 | grep -v Warning | tee "$OUT/throughput.txt"

echo "== 2. kill and resume"
DATA_DIR=${DATA:-}
if [ -z "$DATA_DIR" ] && [ -f .gpu_data/cifar10-jpeg.tar.gz ]; then
  DATA_DIR=/tmp/kdbook-gpu-data; mkdir -p "$DATA_DIR"; tar -xzf .gpu_data/cifar10-jpeg.tar.gz -C "$DATA_DIR"
fi
DEVICE=$DEVICE DATA_DIR=$DATA_DIR OUT=$OUT STEPS=$STEPS $PY - <<'EOF' 2>&1 | tee "$OUT/resume.txt"
import os, signal, subprocess, sys, time, json
from pathlib import Path
out, device, data = Path(os.environ["OUT"]) / "resume", os.environ["DEVICE"], os.environ["DATA_DIR"]
cifar = bool(data)
cfg = dict(dataset="cifar10" if cifar else "synthetic", data_dir=data, model="resnet14_x0.5", teacher="resnet20",
           teacher_ckpt=str(Path("data/teachers/resnet20-cifar10-cpu.pt").resolve()) if cifar else "untrained",
           method="kd", epochs=2, device=device, output_dir=str(out), train_fraction=1.0 if device == "cuda" else 0.02)
if not cifar: cfg.pop("data_dir")
code = "import json, sys; from kdbook.config import RunConfig; from kdbook.train import fit; fit(RunConfig(**json.loads(sys.argv[1])))"
def start(name): return subprocess.Popen([sys.executable, "-c", code, json.dumps({**cfg, "name": name})])
t = time.time(); straight = start("straight"); straight.wait(); straight_s = time.time() - t
victim = start("resumed")
while not (out / "resumed" / "checkpoints" / "epoch_1").exists():
    if victim.poll() is not None: sys.exit("the run ended before its first checkpoint")
    time.sleep(0.2)
victim.send_signal(signal.SIGKILL); victim.wait()
killed = json.loads((out / "resumed" / "record.json").read_text())
print(f"killed after epoch {len(killed['epochs'])} (record status {killed['status']!r})")
resumed = start("resumed"); assert resumed.wait() == 0
a, b = (json.loads((out / n / "record.json").read_text()) for n in ("straight", "resumed"))
print(f"straight: {a['status']}, {len(a['epochs'])} epochs, test top-1 {[e['test_top1'] for e in a['epochs']]}, {straight_s:.0f} s "
      f"({a['machine']['compute_dtype']})")
print(f"resumed:  {b['status']}, {len(b['epochs'])} epochs, test top-1 {[e['test_top1'] for e in b['epochs']]}")
assert b["status"] == "completed" and len(b["epochs"]) == 2 and b["epochs"][0] == killed["epochs"][0]
print("kill and resume: ok (epoch 1 kept from the killed process, epoch 2 trained after the resume)")
EOF
echo "== 3. streaming road"
$PY benchmarks/stream.py --device "$DEVICE" --workers "${STREAM_WORKERS:-8}" --images "${STREAM_IMAGES:-1000}" --batches "${STREAM_BATCHES:-20}" \
    --tree "$OUT/stream-tree" --json "$OUT/stream.json" 2>&1 | grep -v Warning | tee "$OUT/stream.txt"

echo "== 4. IRG Table 4's ImageNet rows, smoke scale"
DEVICE=$DEVICE OUT=$OUT KDBOOK_DATA=$OUT/data $PY - <<'EOF' 2>&1 | grep -v Warning | tee "$OUT/imagenet_smoke.txt" || echo "step 4 failed (above)"
import os, time
from kdbook.reproduce import plan
from kdbook.runner import prepare
from kdbook.tables import load_spec
from kdbook.train import fit
p = plan(load_spec("irg_table4"), "smoke", 1, os.environ["OUT"] + "/imagenet-smoke", only=["imagenet-r18/*"],
         run_settings={"device": os.environ["DEVICE"]})
for job in p["students"]:
    t = time.time()
    cfg, _ = prepare("distill", job.params)
    rec = fit(cfg, quiet=True)
    print(f"{job.key}: {rec['status']} on {rec['machine']['device']}, top-1 {rec['last_top1']:.2f}, {time.time() - t:.1f} s", flush=True)
EOF
echo "results: $OUT"
