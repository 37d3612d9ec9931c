"The `kdbook` command as a user runs it: listing, full runs through papermill, a failure reported (bad input: test_bad_input)."
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdbook.models import create_model, save_checkpoint
from kdbook.results import read_record

KDBOOK = [sys.executable, "-c", "from kdbook.cli import console; console()"]
QUICK = "{max_steps_per_epoch: 2, log_every: 1}"
ROOT = Path(__file__).resolve().parents[1]


def kdbook(*args, cwd=None):
    env = dict(os.environ, KDBOOK_OFFLINE="1")
    return subprocess.run(KDBOOK + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_list_prints_one_name_per_line_name_first():
    for what, expected in (("models", "resnet8x4"), ("methods", "kd"), ("datasets", "cifar10"), ("experiments", "distill")):
        res = kdbook("list", what)
        assert res.returncode == 0
        names = [line.split()[0] for line in res.stdout.splitlines()]
        assert expected in names and len(names) == len(set(names))


def test_train_teacher_then_distill_through_papermill(tmp_path):
    out = tmp_path / "runs"
    res = kdbook("train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--epochs", 2, "--extra", QUICK,
                 "--output-dir", out, "--quiet")
    assert res.returncode == 0, res.stderr
    teacher_dir = out / "synthetic_resnet8_baseline_e2_s0"
    rec = read_record(teacher_dir)
    assert rec["status"] == "completed" and rec["kind"] == "teacher" and len(rec["epochs"]) == 2
    nb = json.loads((teacher_dir / "notebook.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "synthetic" in "".join(injected[0]["source"])

    args = ["distill", "--dataset", "synthetic", "--teacher-ckpt", teacher_dir / "model.pt", "--student", "convnet_nobn",
            "--epochs", 1, "--extra", QUICK, "--output-dir", out]
    res = kdbook(*args)
    assert res.returncode == 0, res.stderr
    assert "epoch 1/1" in res.stdout   # the notebook's output streams to the terminal, without papermill's cell markers
    assert "Executing Cell" not in res.stdout and "IProgress" not in res.stdout + res.stderr
    student = read_record(out / "synthetic_resnet8-to-convnet_nobn_kd_e1_s0")
    assert student["status"] == "completed" and student["teacher"]["model"] == "resnet8"
    assert student["teacher"]["sha256"] == __import__("hashlib").sha256((teacher_dir / "model.pt").read_bytes()).hexdigest()
    again = kdbook(*args, "--quiet")
    assert again.returncode == 0 and "already complete" in again.stdout
    assert read_record(out / "synthetic_resnet8-to-convnet_nobn_kd_e1_s0")["timings"] == student["timings"]
    verbose = kdbook(*args[:-2], "--output-dir", tmp_path / "verbose", "--verbose")
    assert verbose.returncode == 0 and "Executing Cell" in verbose.stdout


def test_distill_without_a_teacher_trains_one_first_and_reuses_it(tmp_path):
    out = tmp_path / "runs"
    args = ["distill", "--dataset", "synthetic", "--teacher", "resnet8", "--student", "convnet_nobn", "--epochs", 1,
            "--extra", QUICK, "--output-dir", out]
    res = kdbook(*args, "--quiet")
    assert res.returncode == 0, res.stderr
    teacher_dir = out / "synthetic_resnet8_baseline_e1_s0"   # the student's data, recipe and seed
    teacher = read_record(teacher_dir)
    assert teacher["status"] == "completed" and teacher["kind"] == "teacher" and teacher["config"]["epochs"] == 1
    student = read_record(out / "synthetic_resnet8-to-convnet_nobn_kd_e1_s0")
    assert student["status"] == "completed" and Path(student["config"]["teacher_ckpt"]) == teacher_dir / "model.pt"
    assert student["teacher"]["sha256"] == __import__("hashlib").sha256((teacher_dir / "model.pt").read_bytes()).hexdigest()
    again = kdbook(*args, "--quiet")   # the teacher is named now: the completed student is returned as it is
    assert again.returncode == 0 and "already complete" in again.stdout
    assert read_record(teacher_dir)["timings"] == teacher["timings"]


def test_a_failing_run_is_recorded_as_failed(tmp_path):
    out = tmp_path / "runs"
    res = kdbook("distill", "--dataset", "synthetic", "--method", "nan_after", "--method-params", "{steps: 3}",
                 "--epochs", 2, "--extra", "{log_every: 1}", "--output-dir", out, "--quiet")
    assert res.returncode == 1
    (run_dir,) = out.iterdir()
    # the notebook's own exception, then where to look
    assert res.stderr.splitlines() == [
        "kdbook: the run failed: TrainingDiverged: loss term 'nan_after.value' became NaN in epoch 1 (by step 3); the run stopped "
        "and the last complete epoch's checkpoint is kept. Non-finite terms: loss, nan_after.value.",
        f"record: {run_dir / 'record.json'}", f"executed notebook: {run_dir / 'notebook.ipynb'}"], res.stderr
    assert run_dir.name == "synthetic_resnet8_nan_after@steps=3_e2_s0"   # method hyperparameters are part of the name
    rec = read_record(run_dir)
    assert rec["status"] == "failed" and "nan_after.value" in rec["error"] and "epoch 1" in rec["error"]
    assert (run_dir / "notebook.ipynb").exists()


def test_a_run_configured_for_accelerate_launch_trains_under_it_and_takes_its_precision(tmp_path):
    out = tmp_path / "runs"
    res = kdbook("distill", "--dataset", "synthetic", "--teacher-ckpt", "untrained", "--teacher", "resnet8", "--student", "resnet8",
                 "--epochs", 1, "--extra", QUICK, "--output-dir", out, "--config-only")
    assert res.returncode == 0, res.stderr
    run_dir = out / "synthetic_resnet8-to-resnet8_kd_e1_s0"
    config = run_dir / "config.json"
    assert "accelerate launch" in res.stdout and str(config) in res.stdout and not (run_dir / "record.json").exists()   # nothing ran
    assert json.loads(config.read_text())["precision"] == "auto"   # left to each machine (and to accelerate's flags)
    env = dict(os.environ, KDBOOK_OFFLINE="1")
    launch = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--mixed_precision", "no",
                             "-m", "kdbook.train", str(config)], capture_output=True, text=True, env=env, timeout=600)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    rec = read_record(run_dir)
    assert rec["status"] == "completed" and rec["machine"]["mixed_precision"] == "no" and rec["machine"]["precision_from"] == "accelerate"
    # a launcher that starts another number of processes than the config splits the batch for is refused
    other = out / "other"
    kdbook("distill", "--dataset", "synthetic", "--teacher-ckpt", "untrained", "--teacher", "resnet8", "--student", "resnet8",
           "--epochs", 1, "--extra", QUICK, "--output-dir", other, "--config-only")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "kdbook.train",
                          str(other / "synthetic_resnet8-to-resnet8_kd_e1_s0" / "config.json")], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode != 0 and "its launcher started 2" in two.stdout + two.stderr


def test_papermill_as_the_readme_runs_it_prints_no_bar_noise_and_says_what_it_does_with_the_teacher(tmp_path):
    "The README's papermill line: progress as plain lines (no redrawn bar, no IProgress warning), the teacher trained or reused "
    "said as it is, and 'auto' precision recorded as auto."
    papermill = str(Path(sys.executable).parent / "papermill")
    def run(method):
        res = subprocess.run([papermill, str(ROOT / "nbs/experiments/distill.ipynb"), str(tmp_path / f"{method}.ipynb"),
                              "-p", "dataset", "synthetic", "-p", "teacher", "resnet8", "-p", "student", "convnet_nobn", "-p", "method", method,
                              "-p", "epochs", "1", "-p", "output_dir", str(tmp_path / "runs"), "-y", f"extra: {QUICK}", "--log-output"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        executed = (tmp_path / f"{method}.ipynb").read_text()
        for noise in ("IProgress", "it/s]", "\\r"): assert noise not in res.stdout + res.stderr + executed, noise
        return res.stdout + res.stderr
    assert "training the teacher first (resnet8 on synthetic, 1 epochs as the student" in run("kd")
    assert "the teacher trained before is reused (resnet8 on synthetic" in run("at")
    for run_dir in (tmp_path / "runs").iterdir():
        assert read_record(run_dir)["machine"]["precision_from"] == "auto", run_dir
