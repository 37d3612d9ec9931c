"""Run folders travel between machines (the shard workflow copies them) and data folders come from anywhere:
nothing kdbook reads from either can run code. Each test plants a payload that would create a marker file."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdbook.results import read_record
from kdbook.config import RunConfig
from kdbook.train import fit
from kdbook.checkpoint import latest_checkpoint

KDBOOK = str(Path(sys.executable).parent / "kdbook")


class Payload:
    "Unpickling this runs a shell command that creates `marker`."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path):
    "Replace `path` with a payload in the form its reader expects (a torch zip for .pt, a raw pickle otherwise)."
    if path.suffix == ".pt": torch.save({"format": "kdbook-state-1", "module": Payload(marker)}, path)
    else: path.write_bytes(pickle.dumps(Payload(marker)))


def interrupted_run(synthetic_run, name: str):
    cfg = synthetic_run(name=name, epochs=2, max_steps_per_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, stop_after_epoch=1, quiet=True)
    return cfg


@pytest.mark.parametrize("planted", ["state.pt", "rng_0.pt", "progress.json", "every file"])
def test_a_planted_checkpoint_file_is_refused_and_runs_nothing(planted, synthetic_run, tmp_path):
    cfg = interrupted_run(synthetic_run, "victim")
    ckpt, marker = latest_checkpoint(tmp_path / "victim"), tmp_path / "pwned"
    assert sorted(p.name for p in ckpt.iterdir()) == ["progress.json", "rng_0.pt", "state.pt"]
    for p in ckpt.iterdir():
        if planted in (p.name, "every file"): plant(p, marker)
    from kdbook.core import KDBookError
    with pytest.raises(KDBookError, match=r"checkpoint '.*epoch_1' cannot be resumed \((UnpicklingError|JSONDecodeError|UnicodeDecodeError)"):
        fit(cfg, quiet=True)
    assert not marker.exists()


def test_files_in_accelerates_format_are_never_read(synthetic_run, tmp_path):
    # an older kdbook (and accelerate's save_state) unpickled custom_checkpoint_*.pkl; kdbook no longer opens them
    cfg = interrupted_run(synthetic_run, "run")
    ckpt, marker = latest_checkpoint(tmp_path / "run"), tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        plant(ckpt / name, marker)
    rec = fit(cfg, quiet=True)
    assert rec["status"] == "completed" and not marker.exists()


def test_the_command_refuses_a_planted_checkpoint_with_exit_2(tmp_path):
    out, marker = tmp_path / "runs", tmp_path / "pwned"
    args = [KDBOOK, "train-teacher", "--dataset", "synthetic", "--model", "resnet8", "--epochs", "2",
            "--extra", "{max_steps_per_epoch: 2}", "--output-dir", str(out), "--quiet"]
    assert subprocess.run(args, capture_output=True).returncode == 0
    (run_dir,) = out.iterdir()
    rec = read_record(run_dir)   # as if the copied folder held a run interrupted after its last epoch
    rec["status"] = "interrupted"; (run_dir / "record.json").write_text(json.dumps(rec))
    for p in latest_checkpoint(run_dir).iterdir(): plant(p, marker)
    res = subprocess.run(args, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("kdbook: error: checkpoint") and "cannot be resumed" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_a_planted_cifar_file_runs_nothing_from_the_command(tmp_path):
    marker, data = tmp_path / "pwned", tmp_path / "data" / "cifar-10-batches-py"
    data.mkdir(parents=True)
    for name in ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        (data / name).write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0], "label_names": ["x"]}, protocol=2))
    res = subprocess.run([KDBOOK, "train-teacher", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                          "--output-dir", str(tmp_path / "runs")], capture_output=True, text=True, env=dict(os.environ, KDBOOK_OFFLINE="1"))
    assert res.returncode == 2 and "is not a CIFAR python file" in res.stderr and "posix.system" in res.stderr
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_writes_stay_under_the_folder_the_user_gave(tmp_path):
    out = tmp_path / "inside" / "runs"
    for name in ("../outside", "../../outside", str(tmp_path / "abs")):
        res = subprocess.run([KDBOOK, "train-teacher", "--dataset", "synthetic", "--name", name, "--output-dir", str(out)],
                             capture_output=True, text=True)
        assert res.returncode == 2 and "is not a plain name" in res.stderr
    # a derived name never climbs out either: a method parameter holding a path becomes part of one folder name
    from kdbook.config import resolve
    c = resolve(RunConfig(dataset="synthetic", method="frame", teacher="resnet8", teacher_ckpt="untrained",
                          method_params={"teacher_head": "../../x/head.pt"}, output_dir=str(out)), check_data=False).cfg
    assert "/" not in c.name and (out / c.name).resolve().parent == out.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_no_write_or_delete_goes_through_a_link_out_of_the_output_folder(synthetic_run, tmp_path, capsys):
    "A run folder whose checkpoints/ leads elsewhere (copied from a shared scratch space) is refused by every road that writes."
    from kdbook.cli import main
    from kdbook.core import KDBookError
    cfg = interrupted_run(synthetic_run, "linked")
    run_dir, elsewhere = tmp_path / "linked", tmp_path.parent / f"{tmp_path.name}-elsewhere"
    (run_dir / "checkpoints").rename(elsewhere)
    (run_dir / "checkpoints").symlink_to(elsewhere)
    before, kept = snapshot(elsewhere), snapshot(run_dir)
    with pytest.raises(KDBookError, match="holds links that lead out of"): fit(cfg, quiet=True)           # the library
    code = main(["distill", "--dataset", "synthetic", "--student", cfg.model, "--method", "baseline", "--epochs", "2", "--batch-size", "32",
                 "--precision", "no", "--output-dir", str(tmp_path), "--name", "linked", "--extra", "{max_steps_per_epoch: 2}"])   # the command
    err = capsys.readouterr().err
    assert code == 2 and str(run_dir / "checkpoints") in err, err
    assert snapshot(elsewhere) == before and snapshot(run_dir) == kept   # nothing written or deleted there, nor here
    # a report folder with a link out in it
    report = tmp_path / "report"; report.mkdir(); (report / "records").symlink_to(elsewhere)
    from kdbook.report import report_folder
    with pytest.raises(KDBookError, match="report folder"): report_folder(report, tmp_path, "irg_table4", "smoke")
