"""Teachers from RepDistiller and mdistiller: their checkpoints, made here by networks built as their code builds
them (tests/foreign_models.py), become kdbook checkpoints that give the same logits, through the API and the CLI."""
import os
import subprocess
import sys

import pytest
import torch

from foreign_models import FOREIGN, randomized
from kdbook.core import KDBookError
from kdbook.models import load_checkpoint, read_checkpoint
from kdbook.results import read_record
from kdbook.teachers import import_teacher

KDBOOK = [sys.executable, "-c", "from kdbook.cli import console; console()"]


def save_theirs(net, path, **extra):
    "As their train_teacher.py saves: the state dict under 'model', with the epoch, accuracy and optimizer state."
    path.parent.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    torch.save({"epoch": 240, "model": net.state_dict(), "accuracy": torch.tensor(73.5), "optimizer": opt.state_dict(), **extra}, path)
    return path


@pytest.mark.parametrize("model", list(FOREIGN))
def test_an_imported_teacher_computes_what_theirs_computes(model, tmp_path):
    theirs = randomized(FOREIGN[model](100), seed=1)
    src = save_theirs(theirs, tmp_path / f"{model}_vanilla" / "ckpt_epoch_240.pth")
    out = import_teacher(src, "repdistiller", model, tmp_path / "teacher.pt")
    ours, _ = load_checkpoint(out)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = theirs(x), ours.eval()(x).logits
    assert got.shape == (4, 100)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    meta = read_checkpoint(out)["meta"]
    assert meta["imported_from"] == "repdistiller" and meta["source_epoch"] == 240 and meta["source_accuracy"] == pytest.approx(73.5)


def test_a_checkpoint_of_another_network_is_refused_naming_the_tensor(tmp_path):
    src = save_theirs(randomized(FOREIGN["resnet56"](100)), tmp_path / "ckpt.pth")
    with pytest.raises(KDBookError, match="has 344 tensors; kdbook's resnet110 has"):
        import_teacher(src, "mdistiller", "resnet110", tmp_path / "t.pt")
    net = randomized(FOREIGN["resnet56"](100))
    state = net.state_dict(); state["layer2.0.conv1.weight"] = torch.zeros(32, 16, 5, 5)   # a 5x5 conv where theirs has 3x3
    torch.save({"model": state}, tmp_path / "odd.pth")
    with pytest.raises(KDBookError, match=r"'layer2.0.conv1.weight' \(32, 16, 5, 5\) does not fit kdbook's resnet56 'stages.1.0.body.0.0.weight' \(32, 16, 3, 3\)"):
        import_teacher(tmp_path / "odd.pth", "mdistiller", "resnet56", tmp_path / "t.pt")
    assert not (tmp_path / "t.pt").exists()


def test_the_cli_imports_a_teacher_that_a_distillation_then_reads(tmp_path):
    env = dict(os.environ, KDBOOK_OFFLINE="1")
    src = save_theirs(randomized(FOREIGN["resnet8x4"](10)), tmp_path / "cifar_teachers" / "resnet8x4_vanilla" / "ckpt_epoch_240.pth")
    res = subprocess.run(KDBOOK + ["import-teacher", str(src), "--from", "mdistiller"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    teacher = tmp_path / "resnet8x4-mdistiller.pt"   # the network read from the folder name
    assert teacher.exists() and str(teacher.name) in res.stdout
    res = subprocess.run(KDBOOK + ["distill", "--dataset", "synthetic", "--teacher-ckpt", str(teacher), "--student", "resnet8",
                                   "--epochs", "1", "--extra", "{max_steps_per_epoch: 2}", "--output-dir", str(tmp_path / "runs"), "--quiet"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    rec = read_record(tmp_path / "runs" / "synthetic_resnet8x4-to-resnet8_kd_e1_s0")
    assert rec["status"] == "completed" and rec["teacher"]["model"] == "resnet8x4"
    bad = subprocess.run(KDBOOK + ["import-teacher", str(src), "--from", "caffe"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown source of the checkpoint 'caffe'" in bad.stderr
    bad = subprocess.run(KDBOOK + ["import-teacher", str(src), "--from", "timm"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "'resnet8x4' is one of kdbook's own networks: import it --from repdistiller or mdistiller" in bad.stderr
