"""Reports over records as they come: one with a string or a NaN where a number belongs, one that is not JSON, a
run whose weights are missing or cut. Each is named and left out; the rest is reported and drawn; a failure inside
an executed notebook reaches the terminal with its own type and message and the executed copy's path."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdbook.core import KDBookError
from kdbook.results import read_record

KDBOOK = str(Path(sys.executable).parent / "kdbook")
SPEC = """
title: three columns
source: tests
dataset: synthetic
teachers:
  r8: {model: resnet8, dataset: synthetic}
rows:
  r: {label: "resnet8 -> resnet8", teacher: r8, student: resnet8}
columns:
  Baseline: {method: baseline}
  KD: {method: kd}
  AT: {method: at}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    "Two seeds of three columns at the smoke scale, with their weights."
    root = tmp_path_factory.mktemp("bad")
    (root / "specs" / "experiments").mkdir(parents=True)
    (root / "specs" / "experiments" / "three.yaml").write_text(SPEC)
    env = {"KDBOOK_SPECS": str(root / "specs")}
    r = subprocess.run([KDBOOK, "reproduce", "three", "--scale", "smoke", "--seeds", "2", "--output-dir", str(root / "runs")],
                       capture_output=True, text=True, env={**__import__("os").environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    return root, env


def copy_of(sweep, tmp_path) -> Path:
    root, _ = sweep
    shutil.copytree(root / "runs", tmp_path / "runs")
    return tmp_path / "runs" / "three" / "smoke" / "r"


def kdbook(sweep, *args):
    import os
    return subprocess.run([KDBOOK, *args], capture_output=True, text=True, env={**os.environ, **sweep[1]})


@pytest.mark.parametrize("damage, why", [
    (lambda rec: {**rec, "last_top1": "57.2"}, "last_top1 '57.2' is not a top-1 between 0 and 100"),
    (lambda rec: {**rec, "best_top1": float("nan")}, "best_top1 nan is not a top-1 between 0 and 100"),
    (None, "is not valid JSON"),
], ids=["string", "nan", "not json"])
def test_a_record_that_cannot_be_used_is_named_and_left_out(sweep, tmp_path, damage, why):
    cells = copy_of(sweep, tmp_path)
    path = cells / "KD" / "seed1" / "record.json"
    if damage is None: path.write_text('{"format": "kdbook-run-1", "status": "compl')   # cut in the middle of a write
    else: path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    r = kdbook(sweep, "report", "three", "--scale", "smoke", "--output-dir", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stdout + r.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Records left out" in md and f"- `r/KD/seed1`: " in md and why in md, md
    kd = read_record(cells / "KD" / "seed0")["last_top1"]
    assert f"| r | KD | 1 | 0 | {kd:.2f} |" in md                    # the cell holds seed 0 alone
    import pandas as pd
    kd_gain = pd.read_csv(tmp_path / "rep" / "gains.csv").set_index("col").loc["KD"]
    assert (kd_gain.how, kd_gain.n, kd_gain.n_base) == ("unpaired, one run a side", 1, 2)   # seed 1 is in no gain either


def test_analyses_name_missing_and_cut_weights_and_draw_the_rest(sweep, tmp_path):
    cells = copy_of(sweep, tmp_path)
    for s in (0, 1): (cells / "KD" / f"seed{s}" / "model.pt").unlink()                # no weights kept
    cut = cells / "AT" / "seed0" / "model.pt"; cut.write_bytes(cut.read_bytes()[:1000])   # cut short
    r = kdbook(sweep, "report", "three", "--scale", "smoke", "--output-dir", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "rep"),
               "--analyses")
    assert r.returncode == 0, r.stdout + r.stderr
    md = (tmp_path / "rep" / "analyses.md").read_text()
    assert "## Runs left out" in md
    assert f"KD: {str(cells / 'KD' / 'seed0' / 'model.pt')!r} does not exist" in md
    assert f"AT: {str(cut)!r} cannot be read (" in md
    assert "Baseline" in md.split("## Runs left out")[1]                 # what can be drawn is drawn


def test_a_notebook_that_fails_says_its_own_error_and_where_its_copy_is(tmp_path, monkeypatch):
    import kdbook.report
    from kdbook.report import execute_into
    from kdbook.runner import NotebookFailed
    nbs = tmp_path / "nbs"; nbs.mkdir()
    def notebook(name, code):
        (nbs / name).write_text(json.dumps({"cells": [
            {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "source": "relative_to = 'repository'", "outputs": [],
             "execution_count": None},
            {"cell_type": "code", "id": "body", "metadata": {}, "source": code, "outputs": [], "execution_count": None}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}))
    notebook("broken.ipynb", "raise ValueError('the figure could not be drawn')")
    notebook("refusing.ipynb", "from kdbook.core import KDBookError\nraise KDBookError('no runs to report')")
    monkeypatch.setattr(kdbook.report, "notebooks_dir", lambda: nbs)   # where execute_into looks it up
    out = tmp_path / "out"; out.mkdir()
    with pytest.raises(NotebookFailed) as e: execute_into(out, "broken.ipynb", {}, {})
    assert str(e.value) == f"ValueError: the figure could not be drawn\nexecuted notebook: {out / 'broken.ipynb'}"
    assert "the figure could not be drawn" in (out / "broken.ipynb").read_text()   # the executed copy shows where
    with pytest.raises(KDBookError, match="^no runs to report$"): execute_into(out, "refusing.ipynb", {}, {})   # bad input: exit 2


def test_records_made_in_another_checkout_name_no_folder_of_it(sweep, tmp_path):
    # a sweep run from a git worktree and reported from the main checkout: the worktree's teacher file is $KDBOOK/...
    from kdbook.report import copy_records
    from kdbook.tables import load_spec
    runs = copy_of(sweep, tmp_path)
    other = tmp_path / "worktree"
    for p in runs.glob("*/seed*/record.json"):
        rec = json.loads(p.read_text())
        rec["environment"]["root"] = str(other)
        rec["config"]["teacher_ckpt"] = str(other / "data" / "teachers" / "t.pt")
        p.write_text(json.dumps(rec))
    import os
    from unittest.mock import patch
    with patch.dict(os.environ, sweep[1]):
        n = copy_records(load_spec("three"), "smoke", tmp_path / "runs", tmp_path / "committed")
    assert n == 6
    for p in (tmp_path / "committed").rglob("record.json"):
        text = p.read_text()
        assert str(tmp_path) not in text, p
        assert json.loads(text)["config"]["teacher_ckpt"] == "$KDBOOK/data/teachers/t.pt"


def test_records_of_runs_not_finished_are_not_copied(sweep, tmp_path):
    # a report committed mid-sweep holds results only: a run still going (or interrupted) would be committed half-way
    from kdbook.report import copy_records
    from kdbook.tables import load_spec
    cells = copy_of(sweep, tmp_path)
    for col, status in [("KD", "running"), ("AT", "interrupted"), ("Baseline", "failed")]:
        p = cells / col / "seed1" / "record.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), "status": status}))
    import os
    from unittest.mock import patch
    with patch.dict(os.environ, sweep[1]):
        n = copy_records(load_spec("three"), "smoke", tmp_path / "runs", tmp_path / "committed")
    copied = sorted(str(p.parent.relative_to(tmp_path / "committed")) for p in (tmp_path / "committed").rglob("seed*/record.json"))
    assert copied == ["three/smoke/r/AT/seed0", "three/smoke/r/Baseline/seed0", "three/smoke/r/Baseline/seed1",
                      "three/smoke/r/KD/seed0"], copied   # the failed run is a result: it stays
    assert n == 4 + len(list((tmp_path / "committed").rglob("teachers/*/record.json")))
