"Trainer behaviours that need files or processes: resume, several processes, NaN, bf16."
import json

import pytest
import torch

from kdbook.models import read_checkpoint
from kdbook.results import read_record
from kdbook.loop import TrainingDiverged
from kdbook.config import bf16_native
from kdbook.train import fit
from kdbook.checkpoint import latest_checkpoint
from kdbook.launch import run


def _weights(run_dir):
    return read_checkpoint(run_dir / "model.pt")["state_dict"]


def _strip(epochs):
    "Per-epoch metrics without wall-clock timings."
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in epochs]


ROADS = {"fast path": dict(precision="auto"),   # bf16 where native, channels-last, batched transforms on the device
         "original road": dict(precision="no", channels_last=False, batched_transforms=False),   # fp32, NCHW, per-image
         # JPEGs decoded and cropped in 2 loader workers (random-resized crops and flips drawn per (seed, epoch, index))
         "streamed": dict(precision="no", dataset="synthetic-folder", image_size=24, num_workers=2)}


@pytest.mark.parametrize("road", list(ROADS))
def test_resumed_run_is_bitwise_identical(road, synthetic_run, tmp_path):
    # augmentation on and BatchNorm in both networks: RNG, running stats, momentum and schedule all matter
    kw = dict(method="kd", teacher="resnet8", teacher_ckpt="untrained", epochs=3, lr_milestones=(2,), **ROADS[road])
    straight = fit(synthetic_run(name="straight", **kw), quiet=True)
    with pytest.raises(KeyboardInterrupt):
        fit(synthetic_run(name="resumed", **kw), stop_after_epoch=1, quiet=True)
    partial = read_record(tmp_path / "resumed")
    assert partial["status"] == "interrupted" and len(partial["epochs"]) == 1
    assert latest_checkpoint(tmp_path / "resumed").name == "epoch_1"
    resumed = fit(synthetic_run(name="resumed", **kw), quiet=True)
    assert resumed["status"] == "completed"
    assert _strip(resumed["epochs"]) == _strip(straight["epochs"])
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_evaluating_less_often_leaves_the_training_unchanged(synthetic_run, tmp_path):
    "eval_every only skips evaluations: the last epoch's weights and numbers are those of a run evaluated every epoch, "
    "also when training draws from the global RNG (dropout), which an evaluation loader without a generator of its own would shift."
    kw = dict(method="dropout_penalty", epochs=4, augment=True)
    every = fit(synthetic_run(name="every", eval_every=1, **kw), quiet=True)
    third = fit(synthetic_run(name="third", eval_every=3, **kw), quiet=True)
    assert [("test_top1" in e) for e in third["epochs"]] == [False, False, True, True]   # the 3rd and the last
    assert third["last_top1"] == every["last_top1"] and third["epochs"][-1]["train"] == every["epochs"][-1]["train"]
    a, b = _weights(tmp_path / "every"), _weights(tmp_path / "third")
    for k in a: assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("dataset", ["synthetic", "synthetic-folder"])
def test_two_processes_equal_one_process_on_the_global_batch(dataset, synthetic_run, tmp_path):
    # no BatchNorm (per-process statistics); augmentation on, since the batched transforms draw their crops and flips
    # for the global batch (the streamed road: per item, in the loader): what is left must match, including a
    # relational loss that couples the two halves. synthetic-folder's 240 images make 7.5 batches: the last, half
    # batch is shared too (accelerate's sharding filled it up with first-batch images for the second process)
    kw = dict(model="convnet_nobn", method="toy_relational", teacher="convnet_nobn", teacher_ckpt="untrained",
              augment=True, device="cpu", epochs=2, batch_size=32, dataset=dataset, image_size=16)
    one = run(synthetic_run(name="one", **kw))
    two = run(synthetic_run(name="two", processes=2, **kw))
    assert two["machine"]["processes"] == 2
    for e1, e2 in zip(one["epochs"], two["epochs"]):
        for term in ("loss", "ce", "toy_relational.graph"):
            assert e1["train"][term] == pytest.approx(e2["train"][term], rel=1e-5, abs=1e-7), term
        assert abs(e1["test_top1"] - e2["test_top1"]) <= 100 / 80   # one image of the smaller test set
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    # the gradient all-reduce sums in another order than one process does; over 20 SGD steps the rounding
    # grows to ~6e-5 on weights of ~0.1 (measured on an AMD EPYC, AVX512 kernels). A run that saw only its
    # half of each batch fails the loss check above (tried: relative difference 1.3e-5 in epoch 1's loss).
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=2e-4)
    # and the relational term really depends on the whole batch: computed on half of it, it differs
    import torch.nn.functional as F
    from kdbook_test_plugins import ToyRelational
    from kdbook.core import Features
    x = torch.randn(8, 5); y = torch.tensor([0, 1] * 4)
    d = ToyRelational(None, None, None)
    s, t = Features(None, x), Features(None, x.flip(0))
    full = d(s, t, {"label": y})["graph"]
    halves = [d(Features(None, x[i:i + 4]), Features(None, x.flip(0)[i:i + 4]), {"label": y[i:i + 4]})["graph"] for i in (0, 4)]
    assert not torch.isclose(full, sum(halves) / 2)


def test_nan_loss_stops_with_term_and_epoch_and_keeps_last_checkpoint(synthetic_run, tmp_path):
    cfg = synthetic_run(name="nan", method="nan_after", method_params={"steps": 25}, epochs=3, log_every=1)
    with pytest.raises(TrainingDiverged, match=r"'nan_after.value' became NaN in epoch 2"):
        fit(cfg, quiet=True)
    rec = read_record(tmp_path / "nan")
    assert rec["status"] == "failed" and "nan_after.value" in rec["error"]
    assert len(rec["epochs"]) == 1
    assert latest_checkpoint(tmp_path / "nan").name == "epoch_1"
    assert not (tmp_path / "nan" / "model.pt").exists()


def test_bf16_autocast_is_really_active_on_cpu(synthetic_run):
    rec = fit(synthetic_run(name="bf16", precision="bf16", device="cpu", epochs=1), quiet=True)
    assert rec["machine"]["compute_dtype"] == "bfloat16"
    assert rec["status"] == "completed" and all(torch.isfinite(torch.tensor(v)) for v in rec["epochs"][0]["train"].values())
    plain = fit(synthetic_run(name="fp32", device="cpu", epochs=1), quiet=True)
    assert plain["machine"]["compute_dtype"] == "float32"
    # bf16 changes the numbers: the two runs are not the same computation
    assert rec["epochs"][0]["train"]["loss"] != plain["epochs"][0]["train"]["loss"]


def test_a_method_that_hides_a_trainable_parameter_from_the_optimizer_is_refused(synthetic_run, tmp_path):
    from kdbook.core import KDBookError
    with pytest.raises(KDBookError, match=r"In no group: \['objective.distiller.head.weight', 'objective.distiller.head.bias'\]"):
        fit(synthetic_run(name="hidden", method="forgets_params"), quiet=True)
    assert not (tmp_path / "hidden" / "record.json").exists()   # refused before the run is recorded


def test_a_rank_that_dies_fails_the_run_and_is_recorded(synthetic_run, tmp_path):
    # rank 1 exits in its first step without a word: accelerate launch reports it, rank 0's all-reduce fails and
    # records why (or, were it killed first, the launching process would); never a run left "running"
    cfg = synthetic_run(name="dies", method="rank_dies", processes=2, device="cpu", model="convnet_nobn", epochs=1)
    with pytest.raises(RuntimeError, match=r"2-process run 'dies' failed \(exit [1-9]"):
        run(cfg)
    rec = read_record(tmp_path / "dies")
    assert rec["status"] == "failed" and rec["error"]
    assert not (tmp_path / "dies" / "model.pt").exists()


def test_a_rank_that_dies_before_any_record_exists_is_recorded_by_the_launching_process(synthetic_run, tmp_path):
    # rank 0 is still setting up (no record yet) when rank 1 dies and the launcher stops it: whatever the timing on a
    # loaded machine, the process that launched them records the run failed
    cfg = synthetic_run(name="early", method="rank_dies_early", processes=2, device="cpu", model="convnet_nobn", epochs=1)
    with pytest.raises(RuntimeError, match=r"2-process run 'early' failed \(exit [1-9]"):
        run(cfg)
    rec = read_record(tmp_path / "early")
    assert rec["status"] == "failed" and "2-process run 'early' failed" in rec["error"] and rec["epochs"] == []


def test_a_rank_that_aborts_after_the_run_completed_leaves_the_completed_record(synthetic_run, tmp_path, capfd):
    # rank 0 writes "completed" after every rank's last collective; rank 1 then aborts in its teardown (SIGABRT): the
    # launcher fails, but nothing the run made can change any more, so the record stands and the abort is reported
    # precision 'auto', resolved by the launching process: the ranks record where it came from
    cfg = synthetic_run(name="aborts", method="rank_aborts_at_teardown", processes=2, device="cpu", model="convnet_nobn", epochs=1, precision="auto")
    rec = run(cfg)
    assert rec["status"] == "completed" and read_record(tmp_path / "aborts") == rec
    assert rec["machine"]["precision_from"] == "auto" and rec["machine"]["mixed_precision"] == ("bf16" if bf16_native("cpu") else "no")
    assert (tmp_path / "aborts" / "model.pt").exists()
    assert "2-process run 'aborts' failed (exit 1) after the run completed" in capfd.readouterr().err


def test_several_processes_start_through_accelerate_launch_with_the_runs_settings(synthetic_run, tmp_path):
    from kdbook.launch import launch_command
    cmd = launch_command(synthetic_run(processes=4, precision="bf16"), tmp_path / "config.json")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and cmd[-3:] == ["-m", "kdbook.train", str(tmp_path / "config.json")]
    flags = dict(zip(cmd[3:-3:], cmd[4:-3]))
    assert flags["--num_processes"] == "4" and flags["--mixed_precision"] == "bf16" and flags["--main_process_port"] == "0"


def test_auto_precision_follows_the_machine_across_a_resume_and_the_record_says_so(synthetic_run, tmp_path, monkeypatch, capsys):
    "A run started with precision 'auto' where bf16 is native resumes with 'auto' where it is not, in fp32; the record keeps "
    "the start's precision and lists the resume's; naming a precision other than the recorded one is refused, with a hint."
    import kdbook.config
    from kdbook.core import KDBookError
    from kdbook.report import _numerics
    kw = dict(precision="auto", device="cpu", epochs=2)
    monkeypatch.setattr(kdbook.config, "cpu_flags", lambda: {"avx512_bf16"})   # the machine it starts on
    with pytest.raises(KeyboardInterrupt):
        fit(synthetic_run(name="moved", **kw), stop_after_epoch=1, quiet=True)
    start = read_record(tmp_path / "moved")
    assert (start["machine"]["mixed_precision"], start["machine"]["compute_dtype"], start["machine"]["precision_from"]) == ("bf16", "bfloat16", "auto")
    monkeypatch.setattr(kdbook.config, "cpu_flags", lambda: set())             # the machine it goes on on: no native bf16
    with pytest.raises(KDBookError, match=r"precision 'bf16' -> 'no'.*pass precision 'auto' to let it follow this machine"):
        fit(synthetic_run(name="moved", **dict(kw, precision="no")), quiet=True)
    assert read_record(tmp_path / "moved")["status"] == "interrupted"      # the refusal wrote nothing
    rec = fit(synthetic_run(name="moved", **kw))
    assert "resuming moved after epoch 1 from" in (out := capsys.readouterr().out) and "in precision 'no' where it ran in 'bf16'" in out
    assert rec["status"] == "completed" and [e["epoch"] for e in rec["epochs"]] == [1, 2]
    assert rec["config"]["precision"] == "bf16" and rec["machine"]["mixed_precision"] == "bf16"   # the start's
    [resume] = rec["resumes"]
    assert (resume["after_epoch"], resume["mixed_precision"], resume["compute_dtype"]) == (1, "no", "float32")
    assert "bfloat16" in _numerics(rec) and "after epoch 1: cpu x1, float32" in _numerics(rec)
    # complete: 'auto' asks for it again on either machine without running it again; an explicit other precision is refused
    assert fit(synthetic_run(name="moved", **kw), quiet=True)["resumes"] == rec["resumes"]
    with pytest.raises(KDBookError, match="another configuration"):
        fit(synthetic_run(name="moved", **dict(kw, precision="no")), quiet=True)
