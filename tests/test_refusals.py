"""A refused command touches nothing: what exists stays byte-identical, what it would create is not created, and the
user reads one line that says why (exit 2)."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdbook.cli import main

KDBOOK = str(Path(sys.executable).parent / "kdbook")


def snapshot(root: Path) -> dict:
    "Every file under `root`: its bytes' digest and its modification time."
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kdbook: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    "A completed one-epoch run on the synthetic data."
    out = tmp_path_factory.mktemp("runs")
    r = subprocess.run([KDBOOK, "train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--epochs", "1", "--output-dir", str(out),
                        "--name", "run", "--extra", "{max_steps_per_epoch: 2}", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("state", ["completed", "interrupted"])
def test_a_run_of_another_configuration_is_refused_before_anything_is_written(finished, tmp_path, capsys, state):
    out = tmp_path / "runs"
    subprocess.run(["cp", "-a", str(finished), str(out)], check=True)
    if state == "interrupted":   # as a stopped run leaves it
        rec = json.loads((out / "run" / "record.json").read_text()); rec["status"] = "interrupted"
        (out / "run" / "record.json").write_text(json.dumps(rec))
    before = snapshot(out)
    code = main(["train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--epochs", "1", "--output-dir", str(out),
                 "--name", "run", "--lr", "0.2", "--extra", "{max_steps_per_epoch: 2}", "--quiet"])
    assert code == 2
    line = one_error_line(capsys)
    assert f"holds a run of another configuration (lr 0.05 -> 0.2; that run is {state})" in line, line
    assert snapshot(out) == before                                     # the record and the executed notebook untouched


def test_a_report_folder_that_is_a_file_is_refused(tmp_path, capsys, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("mine")
    specs = tmp_path / "specs"; (specs / "experiments").mkdir(parents=True)
    (specs / "experiments" / "one.yaml").write_text(
        "title: one\nsource: tests\ndataset: synthetic\nteachers:\n  r8: {model: resnet8, dataset: synthetic}\n"
        "rows:\n  r: {teacher: r8, student: resnet8}\ncolumns:\n  Baseline: {method: baseline}\n")
    monkeypatch.setenv("KDBOOK_SPECS", str(specs))
    assert main(["reproduce", "one", "--scale", "smoke", "--output-dir", str(tmp_path / "sweep")]) == 0
    capsys.readouterr()
    for report_dir in (target, target / "sub"):
        assert main(["report", "one", "--scale", "smoke", "--output-dir", str(tmp_path / "sweep"), "--report-dir", str(report_dir)]) == 2
        assert f"report folder {str(report_dir)!r} cannot be a folder: {str(target)!r} is a file." in one_error_line(capsys)
    assert target.read_text() == "mine"


def test_a_teacher_of_the_wrong_class_count_is_refused_at_plan_time(tmp_path, capsys, monkeypatch):
    from kdbook.models import create_model, save_checkpoint
    specs = tmp_path / "specs"; (specs / "experiments").mkdir(parents=True); (specs / "teachers").mkdir()
    save_checkpoint(specs / "teachers" / "r8-10.pt", create_model("resnet8", 10), "resnet8", 10)
    (specs / "experiments" / "hundred.yaml").write_text(
        "title: hundred\nsource: tests\ndataset: cifar100\n"
        "teachers:\n  r8: {model: resnet8, dataset: cifar100, checkpoint: {smoke: teachers/r8-10.pt}}\n"
        "rows:\n  r: {teacher: r8, student: resnet8}\ncolumns:\n  KD: {method: kd}\n"
        "scales:\n  smoke: {dataset: cifar100}\n")
    monkeypatch.setenv("KDBOOK_SPECS", str(specs))
    out = tmp_path / "sweep"
    assert main(["reproduce", "hundred", "--scale", "smoke", "--output-dir", str(out)]) == 2
    assert "r8-10.pt' has 10 classes, cifar100 has 100." in one_error_line(capsys)
    assert not out.exists()                                            # no run folder made, none failed


def test_a_grid_too_large_to_be_meant_is_refused_unless_raised(tmp_path, capsys, monkeypatch):
    specs = tmp_path / "specs"; (specs / "experiments").mkdir(parents=True)
    values = ", ".join(str(i) for i in range(100))
    (specs / "experiments" / "huge.yaml").write_text(
        "title: huge\nsource: tests\ndataset: synthetic\nteachers:\n  r8: {model: resnet8, dataset: synthetic}\n"
        "rows:\n  r: {teacher: r8, student: resnet8}\n"
        f"columns:\n  IRG: {{method: irg, grid: {{lambda1: [{values}], lambda2: [{values}]}}}}\n")
    monkeypatch.setenv("KDBOOK_SPECS", str(specs))
    monkeypatch.delenv("KDBOOK_MAX_GRID", raising=False)
    out = tmp_path / "sweep"
    assert main(["reproduce", "huge", "--scale", "smoke", "--output-dir", str(out), "--status"]) == 2
    assert "grid of column IRG of huge expands to 10,000 cells, more than 1,000; if that is meant, pass --max-grid 10000." in one_error_line(capsys)
    assert main(["reproduce", "huge", "--scale", "smoke", "--output-dir", str(out), "--status", "--max-grid", "10000"]) == 0
    assert "0/10000 done" in capsys.readouterr().out
    assert not out.exists()


def test_the_plan_of_a_spec_file_names_its_table(tmp_path):
    (tmp_path / "experiments").mkdir()
    spec = tmp_path / "experiments" / "mine.yaml"
    spec.write_text("title: mine\nsource: tests\ndataset: synthetic\nteachers:\n  r8: {model: resnet8, dataset: synthetic}\n"
                    "rows:\n  r: {teacher: r8, student: resnet8}\ncolumns:\n  Baseline: {method: baseline}\n")
    r = subprocess.run([KDBOOK, "reproduce", "--spec-file", str(spec), "--scale", "smoke", "--output-dir", str(tmp_path / "sweep")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("mine at scale smoke: 1 runs"), r.stdout
