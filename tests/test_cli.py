"The `kdbook` command as a user runs it: listing, bad input (exit 2, nothing written), full runs through papermill."
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


def kdbook(*args, cwd=None):
    env = dict(os.environ, KDBOOK_OFFLINE="1")
    return subprocess.run(KDBOOK + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_list_prints_one_name_per_line_name_first():
    for what, expected in (("models", "resnet8x4"), ("methods", "kd"), ("datasets", "cifar10"), ("experiments", "distill")):
        res = kdbook("list", what)
        assert res.returncode == 0
        names = [line.split()[0] for line in res.stdout.splitlines()]
        assert expected in names and len(names) == len(set(names))


@pytest.fixture
def resnet8_ckpt(tmp_path):
    return save_checkpoint(tmp_path / "ckpts" / "resnet8.pt", create_model("resnet8", 10), "resnet8", 10)


BAD = {
    "unknown dataset": (["distill", "--dataset", "cifar11"], "unknown dataset 'cifar11'. Did you mean 'cifar10'?"),
    "unknown model": (["train-teacher", "--dataset", "synthetic", "--model", "resnet9"], "unknown model 'resnet9'"),
    "unknown method": (["distill", "--dataset", "synthetic", "--method", "irgg", "--teacher-ckpt", "{ckpt}"], "unknown method 'irgg'"),
    "teacher of another architecture": (["distill", "--dataset", "synthetic", "--teacher", "resnet32x4", "--teacher-ckpt", "{ckpt}"],
                                        "holds a 'resnet8', not a 'resnet32x4'"),
    "teacher of another class count": (["distill", "--dataset", "synthetic", "--teacher-ckpt", "{ckpt100}"], "has 100 classes; dataset 'synthetic' has 10"),
    "corrupt checkpoint": (["distill", "--dataset", "synthetic", "--teacher-ckpt", "{corrupt}"], "is corrupt or not a PyTorch file"),
    "missing dataset": (["train-teacher", "--dataset", "cifar100", "--data-dir", "{empty}"], "dataset 'cifar100' not found. kdbook looked for"),
    "zero epochs": (["train-teacher", "--dataset", "synthetic", "--epochs", "0"], "epochs must be a positive int, got 0"),
    "negative batch size": (["train-teacher", "--dataset", "synthetic", "--batch-size", "-8"], "batch_size must be a positive int, got -8"),
    "unknown notebook parameter": (["train-teacher", "-p", "epochz", "3"], "unknown parameter of notebook 'train_teacher' 'epochz'"),
    "unknown method hyperparameter": (["distill", "--dataset", "synthetic", "--teacher-ckpt", "{ckpt}", "--method-params", "{{T: 2}}"],
                                      "method 'kd' has no hyperparameters"),
    "no teacher for KD": (["distill", "--dataset", "synthetic"], "needs a teacher"),
}


def test_bad_input_gives_exit_code_2_from_the_console_script(tmp_path):
    res = kdbook("train-teacher", "--dataset", "synthetic", "--epochs", "-1", "--output-dir", tmp_path / "out")
    assert res.returncode == 2 and "epochs must be a positive int, got -1" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_names_the_value_and_writes_nothing(case, tmp_path, resnet8_ckpt, capsys, monkeypatch):
    from kdbook.cli import main
    monkeypatch.setenv("KDBOOK_OFFLINE", "1")
    args, message = BAD[case]
    ckpt100 = save_checkpoint(tmp_path / "ckpts" / "r100.pt", create_model("resnet8", 100), "resnet8", 100)
    corrupt = tmp_path / "ckpts" / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    (tmp_path / "empty").mkdir()
    fill = dict(ckpt=resnet8_ckpt, ckpt100=ckpt100, corrupt=corrupt, empty=tmp_path / "empty")
    out = tmp_path / "out"
    code = main([a.format(**fill) for a in args] + ["--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert err.startswith("kdbook: error:") and "Traceback" not in err
    assert not out.exists()


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
    assert "epoch 1/1" in res.stdout   # the notebook's output streams to the terminal
    student = read_record(out / "synthetic_resnet8-to-convnet_nobn_kd_e1_s0")
    assert student["status"] == "completed" and student["teacher"]["model"] == "resnet8"
    assert student["teacher"]["sha256"] == __import__("hashlib").sha256((teacher_dir / "model.pt").read_bytes()).hexdigest()
    again = kdbook(*args, "--quiet")
    assert again.returncode == 0 and "already complete" in again.stdout
    assert read_record(out / "synthetic_resnet8-to-convnet_nobn_kd_e1_s0")["timings"] == student["timings"]


def test_a_failing_run_is_recorded_as_failed(tmp_path):
    out = tmp_path / "runs"
    res = kdbook("distill", "--dataset", "synthetic", "--method", "nan_after", "--method-params", "{steps: 3}",
                 "--epochs", 2, "--extra", "{log_every: 1}", "--output-dir", out, "--quiet")
    assert res.returncode == 1
    assert "the run failed" in res.stderr
    (run_dir,) = out.iterdir()
    assert run_dir.name == "synthetic_resnet8_nan_after@steps=3_e2_s0"   # method hyperparameters are part of the name
    rec = read_record(run_dir)
    assert rec["status"] == "failed" and "nan_after.value" in rec["error"] and "epoch 1" in rec["error"]
    assert (run_dir / "notebook.ipynb").exists()


def test_too_many_negatives_is_bad_input_before_any_run_folder(tmp_path, capsys, monkeypatch, resnet8_ckpt):
    from kdbook.cli import main
    monkeypatch.setenv("KDBOOK_OFFLINE", "1")
    out = tmp_path / "out"
    code = main(["distill", "--dataset", "synthetic", "--method", "hkd", "--teacher-ckpt", str(resnet8_ckpt), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "16384 negatives per sample asked for, but the training set offers at most 576" in err
    assert not out.exists()
