"""Preemption, the way clusters stop jobs: SIGTERM to every process of a run (Slurm, Kubernetes, spot instances), or
to the command alone; submitit's preemption signal on the cluster road. After each: the record says `interrupted` at
its last finished epoch, no process is left, and the same command resumes to the weights of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdbook.core import alive, descendants
from kdbook.results import read_record
from kdbook.checkpoint import latest_checkpoint

KDBOOK = str(Path(sys.executable).parent / "kdbook")   # the console script of this environment


def teacher_args(out: Path, *extra) -> list:
    return [KDBOOK, "train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--epochs", "40", "--output-dir", str(out),
            "--name", "run", "--extra", "{max_steps_per_epoch: 2, log_every: 1}", *extra]


def start_and_wait_for_epoch(args: list, epoch: int = 2):
    "Start a command in its own session and read its output up to the line of `epoch`; return (process, its tree)."
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        if line.startswith(f"epoch {epoch}/") and "  loss " in line: break   # the epoch's summary line, not its progress
    else:
        pytest.fail(f"the run ended before epoch {epoch}: {proc.stderr.read()}")
    return proc, [proc.pid, *descendants(proc.pid)]


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


def assert_bitwise_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("who", ["every process", "the command alone"])
def test_sigterm_records_interrupted_leaves_no_process_and_the_rerun_matches_an_uninterrupted_run(tmp_path, who):
    out = tmp_path / "stopped"
    proc, tree = start_and_wait_for_epoch(teacher_args(out))
    assert len(tree) >= 2, tree                                   # the command and its notebook's kernel at least
    for pid in (tree if who == "every process" else tree[:1]): os.kill(pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip() == "kdbook: stopped by SIGTERM; completed epochs are checkpointed, run the same command again to resume.", err
    time.sleep(0.5)
    assert [p for p in tree if alive(p)] == []                     # no process left behind
    run_dir = out / "run"
    rec = read_record(run_dir)
    assert rec["status"] == "interrupted" and "SIGTERM" in rec["error"], rec["error"]
    assert 2 <= len(rec["epochs"]) < 40 and latest_checkpoint(run_dir).name == f"epoch_{len(rec['epochs'])}"
    again = subprocess.run(teacher_args(out), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert read_record(run_dir)["status"] == "completed" and len(read_record(run_dir)["epochs"]) == 40
    whole = subprocess.run(teacher_args(tmp_path / "whole"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    assert_bitwise_equal(weights(run_dir), weights(tmp_path / "whole" / "run"))


def test_sigterm_to_every_process_of_a_two_process_run(tmp_path):
    out = tmp_path / "runs"
    args = teacher_args(out, "--processes", "2")
    proc, _ = start_and_wait_for_epoch(args)
    time.sleep(0.5)
    tree = [proc.pid, *descendants(proc.pid)]                     # command, kernel, launcher, both ranks
    assert len(tree) >= 5, tree
    for pid in tree: os.kill(pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    time.sleep(0.5)
    assert [p for p in tree if alive(p)] == []
    rec = read_record(out / "run")
    assert rec["status"] == "interrupted" and 2 <= len(rec["epochs"]) < 40
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    rec = read_record(out / "run")
    assert rec["status"] == "completed" and len(rec["epochs"]) == 40
    # one group of two ranks, not two lone processes writing one folder (what device 'auto' gave on a CPU before)
    assert rec["machine"]["processes"] == 2 and rec["machine"].get("method_state_in_sync") in (True, None)


def test_a_preempted_cluster_job_is_requeued_and_resumes(tmp_path, monkeypatch):
    "submitit's local executor as the cluster: its preemption signal (USR2) reaches the job mid-run; the job records the run "
    "interrupted, requeues itself and resumes it to the weights of an uninterrupted run."
    pytest.importorskip("submitit")
    root = tmp_path / "specs"
    (root / "experiments").mkdir(parents=True)
    (root / "experiments" / "one.yaml").write_text(
        "title: one run\nsource: tests\ndataset: synthetic\nteachers:\n  r8: {model: resnet8, dataset: synthetic}\n"
        "rows:\n  r: {teacher: r8, student: resnet8}\ncolumns:\n  Baseline: {method: baseline}\n"
        "scales:\n  long: {base: smoke, epochs: 150, seeds: 1}\n")
    monkeypatch.setenv("KDBOOK_SPECS", str(root))
    out = tmp_path / "runs"
    args = [KDBOOK, "reproduce", "one", "--scale", "long", "--output-dir", str(out), "--launcher", "submitit-local",
            "--slurm", "{timeout_min: 20}"]
    sweep = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run_dir = out / "one" / "long" / "r" / "Baseline" / "seed0"
    deadline = time.time() + 300
    while time.time() < deadline:                                  # wait for its second epoch
        if (run_dir / "record.json").exists() and len(read_record(run_dir)["epochs"]) >= 2: break
        time.sleep(0.2)
    else:
        sweep.kill(); pytest.fail("the job did not reach its second epoch")
    task = next(p for p in descendants(sweep.pid) if b"submitit.core._submit" in Path(f"/proc/{p}/cmdline").read_bytes())
    os.kill(task, signal.SIGUSR2)                                  # what Slurm sends before a preemption (submitit's --signal)
    output, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, output
    log = (run_dir / "run.log").read_text()
    assert "the cluster job was preempted" in log and "resuming seed0 after epoch" in log, log[-3000:]   # stopped, recorded...
    rec = read_record(run_dir)
    assert rec["status"] == "completed" and len(rec["epochs"]) == 150     # ...and the requeued one resumed and finished
    assert log.count("epoch 1/150  loss") == 1, log[-3000:]                 # resumed, not restarted
    whole = subprocess.run([KDBOOK, "reproduce", "one", "--scale", "long", "--output-dir", str(tmp_path / "whole")],
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert_bitwise_equal(weights(run_dir), weights(tmp_path / "whole" / "one" / "long" / "r" / "Baseline" / "seed0"))
