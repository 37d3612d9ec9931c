"""IRG Table 4's ImageNet rows: every column runs on the streaming road at the smoke scale (the synthetic JPEG
tree in place of ImageNet, untrained teachers); at the real scales the ResNet101-v2 teacher is the user's file."""
import shutil, subprocess, sys
from pathlib import Path

import pytest
import torch

from kdbook.core import data_root
from kdbook.results import read_record

KDBOOK = str(Path(sys.executable).parent / "kdbook")


def kdbook(*args, **kw):
    return subprocess.run([KDBOOK, *args], capture_output=True, text=True, **kw)


def test_the_imagenet_rows_run_at_the_smoke_scale_on_the_streamed_synthetic_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBOOK_DATA", str(tmp_path / "data"))
    cells = ["imagenet-r18/Baseline", "imagenet-r18/MTK", "imagenet-rx26/IRG"]   # a plain, a two-blocks-per-stage, a graph method
    r = kdbook("reproduce", "irg_table4", "--scale", "smoke", *[a for c in cells for a in ("--only", c)],
               "--output-dir", str(tmp_path / "out"), "--workers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    for cell, student in zip(cells, ["tv/resnet18", "tv/resnet18", "ResNeXt26_32x4d"]):
        rec = read_record(tmp_path / "out/irg_table4/smoke" / cell / "seed0")
        assert rec["status"] == "completed", cell
        assert (rec["dataset"]["name"], rec["dataset"]["variant"], rec["model"]["name"]) == ("synthetic-folder", "synthetic-folder v1", student)
        assert rec["config"]["stream_crop"] == "resize-299" and rec["config"]["train_fraction"] == 1.0   # the paper's crop, the full set
    assert read_record(tmp_path / "out/irg_table4/smoke/imagenet-r18/MTK/seed0")["config"]["teacher"] == "timm/resnetv2_101"


def test_the_imagenet_teacher_is_the_users_file_imported_by_name(tmp_path, monkeypatch):
    "Without the file the sweep says how to supply it (exit 2, nothing written); with timm's weights imported it plans."
    import timm
    from safetensors.torch import save_file
    root = tmp_path / "specs"
    for sub in ("experiments", "paper_tables"):
        (root / sub).mkdir(parents=True)
        shutil.copy(data_root() / sub / "irg_table4.yaml", root / sub)
    monkeypatch.setenv("KDBOOK_SPECS", str(root))
    monkeypatch.setenv("KDBOOK_DATA", str(tmp_path / "data"))
    args = ["reproduce", "irg_table4", "--scale", "cpu", "--only", "imagenet-r18/KD", "--output-dir", str(tmp_path / "out"), "--status"]
    r = kdbook(*args)   # no ImageNet in the data folder
    assert r.returncode == 2 and "ImageNet cannot be downloaded for you" in r.stderr, r.stderr
    from kdbook.data import write_jpeg_tree   # a stand-in laid out as ImageNet
    write_jpeg_tree(tmp_path / "data/imagenet/train", 2, classes=3); write_jpeg_tree(tmp_path / "data/imagenet/val", 1, classes=3)
    r = kdbook(*args)   # ImageNet there, the teacher not
    assert r.returncode == 2 and "does not exist" in r.stderr and "kdbook import-teacher <weights> --from timm" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    net = timm.create_model("resnetv2_101", num_classes=1000)   # random weights standing in for the hub's
    save_file(net.state_dict(), str(tmp_path / "resnetv2_101.safetensors"))
    teacher = root / "teachers" / "resnetv2_101-imagenet.pt"
    teacher.parent.mkdir()
    r = kdbook("import-teacher", str(tmp_path / "resnetv2_101.safetensors"), "--from", "timm", "--model", "timm/resnetv2_101", "--output", str(teacher))
    assert r.returncode == 0, r.stderr
    from kdbook.models import load_checkpoint
    mine, _ = load_checkpoint(teacher)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(): torch.testing.assert_close(mine.eval()(x).logits, net.eval()(x))
    r = kdbook(*args)
    assert r.returncode == 0 and "imagenet-r18/KD/seed0" in r.stdout, r.stdout + r.stderr
