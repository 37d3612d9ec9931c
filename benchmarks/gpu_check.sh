#!/usr/bin/env bash
# The fast path on one GPU, in under 8 minutes. Run it from the repository root on a machine with a CUDA GPU:
#
#   bash benchmarks/gpu_check.sh                 # writes its results under $OUT (default runs/gpu_check)
#   DEVICE=cpu STEPS=3 bash benchmarks/gpu_check.sh   # the same steps, tiny, on a CPU: a check of the script itself
#
# 1. step throughput (img/s) and peak memory of resnet32x4 -> resnet8x4 with KD, CRD and HKD at batch 64 and 256,
#    original road (fp32, NCHW, per-image transforms) against the fast path in bf16 and fp16; from the KD
#    throughput, the time of a 240-epoch CIFAR-100 run (benchmarks/throughput.py);
# 2. a 2-epoch CIFAR-10 distillation killed after its first epoch and resumed, beside an uninterrupted one.
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
echo "results: $OUT"
