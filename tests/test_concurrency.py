"""One process per run folder: two sweeps of the same table into one folder, and a second `kdbook distill` of a
run that is going, each leave every run done once and every notebook intact."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdbook.results import lock_held, read_record

KDBOOK = str(Path(sys.executable).parent / "kdbook")

TOY = """
title: toy table
source: tests
published: toy
dataset: synthetic
teachers:
  r8: {model: resnet8}
rows:
  r8-r8: {teacher: r8, student: resnet8}
columns:
  Baseline: {method: baseline}
  KD: {method: kd}
scales:   # a trained teacher (unlike the smoke scale's untrained one), so both sweeps need its run first
  cpu: {seeds: 3, epochs: 1, teacher_epochs: 1, max_steps_per_epoch: 2}
"""


@pytest.fixture
def specs(tmp_path, monkeypatch):
    root = tmp_path / "specs"
    (root / "experiments").mkdir(parents=True); (root / "paper_tables").mkdir()
    (root / "experiments" / "toy.yaml").write_text(TOY)
    (root / "paper_tables" / "toy.yaml").write_text("source: made up\nvalues: {r8-r8: {Baseline: '50.0', KD: '55.0'}}\n")
    monkeypatch.setenv("KDBOOK_SPECS", str(root))
    return root


def test_two_sweeps_started_together_run_every_run_once(specs, tmp_path):
    out = tmp_path / "runs"
    args = [KDBOOK, "reproduce", "toy", "--scale", "cpu", "--output-dir", str(out)]
    sweeps = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=900)[0] for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], logs
    sweep = out / "toy" / "cpu"
    runs = sorted(sweep.glob("r8-r8/*/seed*")) + [sweep / "teachers" / "r8"]
    assert len(runs) == 7   # 2 columns x 3 seeds, and the teacher trained once for both
    for run in runs:
        assert read_record(run)["status"] == "completed", run
        assert json.loads((run / "notebook.ipynb").read_text())["cells"], run
        # one process trained it: its log holds one first epoch, whatever the other sweep's worker said there
        assert (run / "run.log").read_text().count("epoch 1/1 ") == 1, (run / "run.log").read_text()
    said = "\n".join(logs)
    assert said.count(": started") >= 7 and ": failed" not in said


def test_a_second_run_of_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "runs"
    args = [KDBOOK, "train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--output-dir", str(out), "--name", "shared"]
    first = subprocess.Popen(args + ["--epochs", "200"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in first.stdout:   # the first run holds the folder once it trains
            if line.startswith("epoch 1/200"): break
        assert lock_held(out / "shared")
        second = subprocess.run(args + ["--epochs", "200"], capture_output=True, text=True)
        assert second.returncode == 2
        assert second.stderr.startswith("kdbook: error: run folder") and "is being run by another process (pid" in second.stderr
    finally:
        os.killpg(first.pid, 9); first.wait()   # the command and its kernel, as kill -9 of a job would
    assert not lock_held(out / "shared")   # the kernel released the killed run's lock
    assert json.loads((out / "shared" / "notebook.ipynb").read_text())["cells"]
