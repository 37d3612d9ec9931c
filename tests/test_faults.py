"""Faults while a run works: a full disk, a notebook save that fails, Ctrl-C, a killed process's leftovers, file
modes. After each: a valid notebook or none, a record that says what happened, no temporary file left."""
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kdbook.results import read_record
from kdbook.config import RunConfig
from kdbook.train import fit
from kdbook.checkpoint import latest_checkpoint

KDBOOK = str(Path(sys.executable).parent / "kdbook")   # the console script of this environment
QUICK = "{max_steps_per_epoch: 2, log_every: 1}"


def temporaries(root: Path) -> list:
    "What an interrupted write would leave: .tmp files and .tmp_epoch_* folders."
    return [str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp_")]


def notebook_is_valid_or_absent(run_dir: Path) -> bool:
    nb = run_dir / "notebook.ipynb"
    return not nb.exists() or bool(json.loads(nb.read_text())["cells"])


def test_a_full_disk_fails_the_run_cleanly(tmp_path):
    # RLIMIT_FSIZE makes every write past 150 kB fail (EFBIG), as a full disk would: here the first checkpoint
    def small_disk(): resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
    out = tmp_path / "runs"
    res = subprocess.run([KDBOOK, "train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--epochs", "3",
                          "--extra", QUICK, "--output-dir", str(out), "--quiet"], capture_output=True, text=True, preexec_fn=small_disk)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("kdbook: the run failed: OSError: could not write the checkpoint of epoch 1") and "is the disk full?" in lines[0]
    (run_dir,) = out.iterdir()
    assert lines[1:] == [f"record: {run_dir / 'record.json'}", f"executed notebook: {run_dir / 'notebook.ipynb'}"]
    rec = read_record(run_dir)
    assert rec["status"] == "failed" and "could not write the checkpoint" in rec["error"]
    assert notebook_is_valid_or_absent(run_dir)
    assert temporaries(run_dir) == [] and latest_checkpoint(run_dir) is None


def test_a_notebook_save_that_fails_leaves_the_last_good_notebook(tmp_path, monkeypatch):
    from kdbook.runner import AtomicNotebookIO, RunFailed, run_notebook
    write, calls = AtomicNotebookIO.write.__func__, []

    def failing(cls, buf, path):
        calls.append(path)
        if len(calls) == 4: raise OSError(28, "No space left on device")   # papermill saves after each cell
        write(cls, buf, path)
    monkeypatch.setattr(AtomicNotebookIO, "write", classmethod(failing))
    with pytest.raises(RunFailed, match="No space left on device") as e:
        run_notebook("train_teacher", {"dataset": "synthetic", "model": "resnet8", "epochs": 2, "output_dir": str(tmp_path),
                                       "extra": {"max_steps_per_epoch": 2}}, log_output=False)
    run_dir = e.value.run_dir
    assert notebook_is_valid_or_absent(run_dir) and (run_dir / "notebook.ipynb").exists()
    assert read_record(run_dir)["status"] in ("failed", "completed")   # the save may fail after training finished
    if read_record(run_dir)["status"] == "failed": assert "No space left on device" in read_record(run_dir)["error"]
    assert temporaries(run_dir) == []


def test_ctrl_c_prints_the_interrupted_line_only_and_the_run_resumes(tmp_path):
    out = tmp_path / "runs"
    args = [KDBOOK, "train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--epochs", "300", "--output-dir", str(out)]
    # its own process group, as a terminal's foreground job, with Ctrl-C's default action even if pytest ignores SIGINT
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    for line in proc.stdout:
        if line.startswith("epoch 2/300"): break
    os.killpg(proc.pid, signal.SIGINT)                         # what Ctrl-C in a terminal sends: the whole group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip() == "kdbook: interrupted; completed epochs are checkpointed, run the same command again to resume.", err
    (run_dir,) = out.iterdir()
    rec = read_record(run_dir)
    assert rec["status"] == "interrupted" and len(rec["epochs"]) >= 2
    assert notebook_is_valid_or_absent(run_dir) and temporaries(run_dir) == []
    assert latest_checkpoint(run_dir).name == f"epoch_{len(rec['epochs'])}"


def test_a_stop_that_surfaces_as_a_librarys_error_is_recorded_interrupted_and_resumes(synthetic_run, tmp_path, monkeypatch):
    "SIGTERM raises its KeyboardInterrupt wherever the run is; inside torch.save's writer it comes back as torch's own "
    "RuntimeError (seen on a loaded machine: a two-process run stopped while writing model_best.pt was recorded failed)."
    import time
    import kdbook.train

    def stopped_mid_write(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGTERM)   # the scheduler's stop arrives mid-write...
            time.sleep(30)
        except KeyboardInterrupt as e:              # ...and torch's writer turns the handler's exception into its own
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8768 vs 8664") from e
    real = kdbook.train.save_student
    monkeypatch.setattr(kdbook.train, "save_student", stopped_mid_write)
    cfg = synthetic_run(name="stopped", epochs=2)
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM"):
        fit(cfg, quiet=True)
    rec = read_record(tmp_path / "stopped")
    assert rec["status"] == "interrupted", rec["error"]
    assert "SIGTERM" in rec["error"] and "unexpected pos" in rec["error"]   # what stopped it, and how it surfaced
    assert temporaries(tmp_path / "stopped") == []
    monkeypatch.setattr(kdbook.train, "save_student", real)
    rec = fit(cfg, quiet=True)                                              # the same run again resumes and completes
    assert rec["status"] == "completed" and len(rec["epochs"]) == 2


def test_leftovers_of_a_killed_run_are_removed_when_it_resumes(synthetic_run, tmp_path):
    cfg = synthetic_run(name="killed", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, stop_after_epoch=1, quiet=True)
    run_dir = tmp_path / "killed"
    (run_dir / "checkpoints" / ".tmp_epoch_2").mkdir()          # what kill -9 during a save leaves
    (run_dir / "checkpoints" / ".tmp_epoch_2" / "state.pt").write_bytes(b"half")
    (run_dir / ".record.json.x1y2.tmp").write_text("{")
    (run_dir / ".model.pt.z9.tmp").write_bytes(b"half")
    rec = fit(cfg, quiet=True)
    assert rec["status"] == "completed" and len(rec["epochs"]) == 2
    assert temporaries(run_dir) == []


def test_records_reports_and_notebooks_get_the_users_umask(tmp_path, monkeypatch):
    root = tmp_path / "specs"
    (root / "experiments").mkdir(parents=True); (root / "paper_tables").mkdir()
    (root / "experiments" / "toy.yaml").write_text("""
title: toy table
source: tests
published: toy
dataset: synthetic
teachers: {r8: {model: resnet8}}
rows: {r8-r8: {teacher: r8, student: resnet8}}
columns: {Baseline: {method: baseline}}
""")
    (root / "paper_tables" / "toy.yaml").write_text("source: made up\nvalues: {r8-r8: {Baseline: '50.0'}}\n")
    env = dict(os.environ, KDBOOK_SPECS=str(root))
    out = tmp_path / "runs"
    for cmd in (["reproduce", "toy", "--scale", "smoke"], ["report", "toy", "--scale", "smoke"]):
        res = subprocess.run([KDBOOK, *cmd, "--output-dir", str(out)], capture_output=True, text=True, env=env,
                             preexec_fn=lambda: os.umask(0o022))
        assert res.returncode == 0, res.stderr
    sweep = out / "toy" / "smoke"
    files = [sweep / "r8-r8/Baseline/seed0" / n for n in ("record.json", "job.json", "notebook.ipynb", "model.pt", ".lock")]
    files += [sweep / "report" / n for n in ("report.md", "cells.csv", "runs.csv", "report.ipynb")]
    assert {str(f.relative_to(sweep)): oct(f.stat().st_mode & 0o777) for f in files} == {str(f.relative_to(sweep)): "0o644" for f in files}
