"""A catalogue of bad input, as a careful user (and an attacker) would give it: each case exits 2 with one
`kdbook: error:` line that names the value, prints no traceback, and writes nothing."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from kdbook.cli import main
from kdbook.models import create_model, save_checkpoint

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Payload:
    "Unpickling this runs a shell command that creates `marker`: what a planted file would do."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def jpeg_tree(root: Path, per_class: int = 1) -> Path:
    "A CIFAR-10 ImageFolder tree of tiny JPEGs under root/cifar10-jpeg."
    for split in ("train", "test"):
        for c, cls in enumerate(CIFAR_CLASSES):
            (root / "cifar10-jpeg" / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (32, 32), (c * 20, i * 50, 0)).save(root / "cifar10-jpeg" / split / cls / f"{i:04d}.jpg")
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "Checkpoints and data folders the cases point at (made once; none of them is modified by a case)."
    d = tmp_path_factory.mktemp("inputs")
    f = {"ckpt": save_checkpoint(d / "resnet8.pt", create_model("resnet8", 10), "resnet8", 10),
         "ckpt100": save_checkpoint(d / "resnet8-100.pt", create_model("resnet8", 100), "resnet8", 100),
         "misfit": save_checkpoint(d / "misfit.pt", create_model("resnet20", 10), "resnet8", 10),   # weights of another net
         "corrupt": d / "corrupt.pt", "foreign": d / "foreign.pt", "empty": d / "empty", "afile": d / "afile",
         "marker": d / "pwned", "data": jpeg_tree(d / "good")}
    f["corrupt"].write_bytes(b"\x00garbage")
    torch.save({"weights": torch.zeros(3)}, f["foreign"])           # a PyTorch file, but not a kdbook checkpoint
    f["empty"].mkdir(); f["afile"].write_text("not a folder")
    # data folders with one thing wrong each
    f["nine"] = jpeg_tree(d / "nine"); [p.unlink() for p in (f["nine"] / "cifar10-jpeg/test/truck").iterdir()]
    (f["nine"] / "cifar10-jpeg/test/truck").rmdir()
    f["emptyclass"] = jpeg_tree(d / "emptyclass"); (f["emptyclass"] / "cifar10-jpeg/train/cat/0000.jpg").unlink()
    f["emptytest"] = jpeg_tree(d / "emptytest")
    for cls in CIFAR_CLASSES: (f["emptytest"] / "cifar10-jpeg/test" / cls / "0000.jpg").unlink()
    f["badjpeg"] = jpeg_tree(d / "badjpeg"); (f["badjpeg"] / "cifar10-jpeg/train/dog/0000.jpg").write_bytes(b"\xff\xd8\xff garbage")
    f["badtestjpeg"] = jpeg_tree(d / "badtestjpeg"); (f["badtestjpeg"] / "cifar10-jpeg/test/ship/0000.jpg").write_bytes(b"")
    f["planted"] = d / "planted"
    (f["planted"] / "cifar-10-batches-py").mkdir(parents=True)
    for name in ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        (f["planted"] / "cifar-10-batches-py" / name).write_bytes(pickle.dumps({"data": Payload(f["marker"]), "labels": [0]}))
    return f


SYN = ["--dataset", "synthetic"]
T = ["--teacher-ckpt", "{ckpt}"]
CASES = {
    # names and choices
    "unknown dataset": (["distill", "--dataset", "cifar11"], "unknown dataset 'cifar11'. Did you mean 'cifar10'?"),
    "unknown model": (["train-teacher", *SYN, "--model", "resnet9"], "unknown model 'resnet9'"),
    "unknown method": (["distill", *SYN, *T, "--method", "irgg"], "unknown method 'irgg'"),
    "unknown teacher architecture": (["distill", *SYN, "--teacher", "resnet99", "--teacher-ckpt", "untrained"], "unknown model 'resnet99'"),
    "unknown torchvision teacher": (["distill", *SYN, "--teacher", "tv/resnet1", "--teacher-ckpt", "untrained"], "unknown torchvision teacher 'resnet1'"),
    "unknown precision": (["train-teacher", *SYN, "--precision", "fp8"], "unknown precision 'fp8'"),
    "unknown device": (["train-teacher", *SYN, "--device", "tpu"], "unknown device 'tpu'"),
    "unknown notebook parameter": (["train-teacher", "-p", "epochz", "3"], "unknown parameter of notebook 'train_teacher' 'epochz'"),
    "unknown run setting": (["train-teacher", *SYN, "--extra", "{epoch: 3}"], "unknown run setting 'epoch'. Did you mean 'epochs'?"),
    "unknown method hyperparameter": (["distill", *SYN, *T, "--method", "irg", "--method-params", "{lambda9: 1}"],
                                      "unknown hyperparameter of method 'irg' 'lambda9'"),
    "hyperparameters of a method without any": (["distill", *SYN, *T, "--method-params", "{T: 2}"], "method 'kd' has no hyperparameters"),
    "hyperparameter of the wrong type": (["distill", *SYN, *T, "--method", "irg", "--method-params", "{lambda1: lots}"],
                                         "hyperparameter 'lambda1' expects float, got 'lots'"),
    "unknown list": (["list", "recipes"], "argument what: invalid choice: 'recipes'"),
    "unknown command": (["distil"], "invalid choice: 'distil'"),
    # teachers
    "no teacher for KD, and the one to train first unknown": (["distill", *SYN, "--teacher", "resnet2000"], "resnet2000"),
    "missing teacher checkpoint": (["distill", *SYN, "--teacher-ckpt", "{empty}/none.pt"], "does not exist"),
    "corrupt teacher checkpoint": (["distill", *SYN, "--teacher-ckpt", "{corrupt}"], "is corrupt or not a PyTorch file"),
    "foreign PyTorch file as teacher": (["distill", *SYN, "--teacher-ckpt", "{foreign}"], "is not a kdbook model checkpoint"),
    "teacher of another architecture": (["distill", *SYN, "--teacher", "resnet32x4", *T], "holds a 'resnet8', not a 'resnet32x4'"),
    "teacher of another class count": (["distill", *SYN, "--teacher-ckpt", "{ckpt100}"], "has 100 classes; dataset 'synthetic' has 10"),
    "teacher weights that do not fit": (["distill", *SYN, "--teacher-ckpt", "{misfit}"], "does not fit its architecture 'resnet8'"),
    "untrained teacher without architecture": (["distill", *SYN, "--teacher-ckpt", "untrained"], "needs the teacher architecture"),
    "pretrained zoo teacher": (["distill", *SYN, "--teacher", "resnet8", "--teacher-ckpt", "pretrained"], "'pretrained' is for tv/ and clip: teachers"),
    "KD from a torchvision teacher's own classes": (["distill", *SYN, "--teacher", "tv/resnet18", "--teacher-ckpt", "pretrained"],
                                                   "KD (alpha > 0) needs teacher logits over the dataset's classes"),
    # numbers
    "zero epochs": (["train-teacher", *SYN, "--epochs", "0"], "epochs must be a positive int, got 0"),
    "negative batch size": (["train-teacher", *SYN, "--batch-size", "-8"], "batch_size must be a positive int, got -8"),
    "batch size as text": (["train-teacher", *SYN, "--batch-size", "many"], "setting 'batch_size' must be int, got 'many'"),
    "fractional epochs": (["train-teacher", *SYN, "--epochs", "2.5"], "setting 'epochs' must be int or None, got 2.5"),
    "negative CE weight": (["distill", *SYN, *T, "--gamma", "-0.1"], "gamma must be a finite number >= 0, got -0.1"),
    "NaN KD weight": (["distill", *SYN, *T, "--alpha", ".nan"], "alpha must be a finite number >= 0, got nan"),
    "infinite method weight": (["distill", *SYN, *T, "--method", "irg", "--beta", ".inf"], "beta must be a finite number >= 0, got inf"),
    "zero temperature": (["distill", *SYN, *T, "--kd-T", "0"], "kd_T must be a finite number > 0, got 0"),
    "negative temperature": (["distill", *SYN, *T, "--kd-T", "-4"], "kd_T must be a finite number > 0, got -4"),
    "NaN learning rate": (["train-teacher", *SYN, "--lr", ".nan"], "lr must be a finite number > 0, got nan"),
    "negative learning rate": (["train-teacher", *SYN, "--lr", "-1e-3"], "lr must be a finite number > 0, got -0.001"),
    "momentum of one": (["train-teacher", *SYN, "--extra", "{momentum: 1.0}"], "momentum must be a finite number in [0, 1), got 1.0"),
    "negative momentum": (["train-teacher", *SYN, "--extra", "{momentum: -0.5}"], "momentum must be a finite number in [0, 1), got -0.5"),
    "negative weight decay": (["train-teacher", *SYN, "--extra", "{weight_decay: -5e-4}"], "weight_decay must be a finite number >= 0, got -0.0005"),
    "zero lr decay": (["train-teacher", *SYN, "--extra", "{lr_decay: 0}"], "lr_decay must be a finite number in (0, 1], got 0"),
    "zero image size": (["train-teacher", *SYN, "--extra", "{image_size: 0}"], "image_size must be a positive int, got 0"),
    "negative workers": (["train-teacher", *SYN, "--extra", "{num_workers: -1}"], "num_workers must be 0 or more, got -1"),
    "milestones as words": (["train-teacher", *SYN, "--extra", "{lr_milestones: [early, late]}"], "lr_milestones must be epochs"),
    "zero training fraction": (["train-teacher", *SYN, "--train-fraction", "0"], "train_fraction must be a finite number in (0, 1], got 0"),
    "training fraction above one": (["train-teacher", *SYN, "--train-fraction", "1.5"], "train_fraction must be a finite number in (0, 1], got 1.5"),
    "negative seed": (["train-teacher", *SYN, "--seed", "-1"], "seeds must be 0 or more, got seed=-1"),
    "zero log interval": (["train-teacher", *SYN, "--extra", "{log_every: 0}"], "log_every must be a positive int, got 0"),
    "zero evaluation interval": (["train-teacher", *SYN, "--extra", "{eval_every: 0}"], "eval_every must be a positive int, got 0"),
    "channels_last as a word": (["train-teacher", *SYN, "--extra", "{channels_last: sometimes}"], "setting 'channels_last' must be bool, got 'sometimes'"),
    "negative warm-up": (["train-teacher", *SYN, "--extra", "{beta_warmup: -2}"], "beta_warmup must be a whole number of epochs, 0 or more, got -2"),
    "zero steps per epoch": (["train-teacher", *SYN, "--extra", "{max_steps_per_epoch: 0}"], "max_steps_per_epoch must be a positive int, got 0"),
    "zero processes": (["train-teacher", *SYN, "--processes", "0"], "processes must be a positive int, got 0"),
    "batch not divisible by processes": (["train-teacher", *SYN, "--batch-size", "33", "--processes", "2", "--device", "cpu"],
                                         "batch_size 33 must be divisible by processes 2"),
    "fp16 without a GPU": (["train-teacher", *SYN, "--precision", "fp16"], "precision 'fp16' needs a CUDA GPU"),
    "method_params not a mapping": (["distill", *SYN, *T, "--method-params", "3"], "setting 'method_params' must be dict, got 3"),
    "extra not a mapping": (["train-teacher", *SYN, "--extra", "[1, 2]"], "extra must be a mapping of run settings, got [1, 2]"),
    "value that is not YAML": (["train-teacher", *SYN, "--extra", "{epochs: [1"], "cannot read"),
    "YAML that asks for a Python object": (["train-teacher", *SYN, "--extra", "!!python/object/apply:os.system ['touch {marker}']"],
                                          "could not determine a constructor"),
    "too many negatives": (["distill", *SYN, *T, "--method", "hkd"], "16384 negatives per sample asked for, but the training set offers at most"),
    # where runs go
    "run name that climbs out": (["train-teacher", *SYN, "--name", "../escaped"], "run name '../escaped' is not a plain name"),
    "absolute run name": (["train-teacher", *SYN, "--name", "{empty}/abs"], "is not a plain name"),
    "run name with a slash": (["train-teacher", *SYN, "--name", "a/b"], "run name 'a/b' is not a plain name"),
    "hidden run name": (["train-teacher", *SYN, "--name", ".hidden"], "is not a plain name"),
    "output dir that is a file": (["train-teacher", *SYN, "--output-dir", "{afile}"], "is a file"),
    "output dir under a file": (["train-teacher", *SYN, "--output-dir", "{afile}/runs"], "is a file"),
    # data folders
    "missing dataset": (["train-teacher", "--dataset", "cifar100", "--data-dir", "{empty}"], "dataset 'cifar100' not found. kdbook looked for"),
    "CIFAR-10 tree with nine classes": (["train-teacher", "--dataset", "cifar10", "--data-dir", "{nine}"], "has 9 class folders"),
    "empty class folder": (["train-teacher", "--dataset", "cifar10", "--data-dir", "{emptyclass}"], "cat' holds no images"),
    "test folders all empty": (["train-teacher", "--dataset", "cifar10", "--data-dir", "{emptytest}"], "airplane' holds no images"),
    "corrupt training JPEG": (["train-teacher", "--dataset", "cifar10", "--data-dir", "{badjpeg}"], "dog/0000.jpg' cannot be decoded"),
    "empty test JPEG": (["train-teacher", "--dataset", "cifar10", "--data-dir", "{badtestjpeg}"], "ship/0000.jpg' cannot be decoded"),
    "planted CIFAR pickle": (["train-teacher", "--dataset", "cifar10", "--data-dir", "{planted}"], "which no CIFAR file holds"),
    # sweeps and reports
    "unknown experiment": (["reproduce", "irg_tabel4", "--scale", "smoke"], "unknown experiment 'irg_tabel4'. Did you mean 'irg_table4'?"),
    "experiment as a relative path": (["reproduce", "../experiments/irg_table4", "--scale", "smoke"], "unknown experiment '../experiments/irg_table4'"),
    "experiment as an absolute path": (["reproduce", "{afile}", "--scale", "smoke"], "unknown experiment"),
    "spec file that is not YAML": (["reproduce", "--spec-file", "{afile}", "--scale", "smoke"], "is not a .yaml file"),
    "no experiment": (["reproduce", "--scale", "smoke"], "name an experiment"),
    "unknown scale": (["reproduce", "irg_table4", "--scale", "huge"], "unknown scale of irg_table4 'huge'"),
    "zero seeds": (["reproduce", "irg_table4", "--scale", "smoke", "--seeds", "0"], "seeds must be a positive int, got 0"),
    "seeds as text": (["reproduce", "irg_table4", "--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
    "zero workers": (["reproduce", "irg_table4", "--scale", "smoke", "--workers", "0"], "workers must be a positive int, got 0"),
    "sweep on an unknown device": (["reproduce", "irg_table4", "--scale", "smoke", "--device", "gpu"], "unknown device 'gpu'"),
    "sweep in an unknown precision": (["reproduce", "irg_table4", "--scale", "smoke", "--precision", "half"], "unknown precision 'half'"),
    "sweep in fp16 without a GPU": (["reproduce", "irg_table4", "--scale", "smoke", "--precision", "fp16"], "precision 'fp16' needs a CUDA GPU"),
    "sweep with zero processes": (["reproduce", "irg_table4", "--scale", "smoke", "--processes", "0"], "processes must be a positive int, got 0"),
    "sweep into a file": (["reproduce", "irg_table4", "--scale", "smoke", "--output-dir", "{afile}"], "is a file"),
    "shard out of range": (["reproduce", "irg_table4", "--scale", "smoke", "--shard", "3/2"], "shard '3/2' is not i/n"),
    "cell pattern that matches nothing": (["reproduce", "irg_table4", "--scale", "smoke", "--only", "*/KDD"], "unknown cell pattern of irg_table4 '*/KDD'"),
    "report of nothing run": (["report", "irg_table4", "--scale", "smoke"], "no runs of irg_table4 at scale 'smoke'"),
    "report of an unknown experiment": (["report", "../x"], "unknown experiment '../x'"),
    "report with an unknown interval": (["report", "irg_table4", "--scale", "smoke", "--interval", "z"], "invalid choice: 'z' (choose from 't', 'bootstrap')"),
    "report with a zero half-width": (["report", "irg_table4", "--scale", "smoke", "--max-halfwidth", "0"], "--max-halfwidth must be a positive number of points, got 0.0"),
}
if torch.cuda.is_available():   # these are bad input only on a machine without a GPU
    for k in ("fp16 without a GPU", "sweep in fp16 without a GPU"): CASES.pop(k)


def test_the_catalogue_is_large():
    assert len(CASES) >= 50


def _tree(root: Path) -> set:
    "Every path under `root`, but the decoded-data cache (a split read whole before another failed is cached: not a run's output)."
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".kdbook-cache" not in p.parts}


def fill(arg: str, files: dict) -> str:
    "`arg` with each {name} of `files` replaced by its path (YAML's own braces left alone)."
    for k, v in files.items(): arg = arg.replace("{" + k + "}", str(v))
    return arg


def run_main(argv) -> int:
    "`kdbook ARGV` in this process: its exit code (argparse's own errors exit through SystemExit)."
    try: return main(argv)
    except SystemExit as e: return e.code


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_error_line_and_writes_nothing(case, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDBOOK_OFFLINE", "1")
    args, message = CASES[case]
    out = tmp_path / "out"
    argv = [fill(a, files) for a in args]
    if "--output-dir" not in argv and argv[0] in ("train-teacher", "distill", "reproduce", "report"): argv += ["--output-dir", str(out)]
    before = _tree(files["ckpt"].parent)
    code = run_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    errors = [line for line in err.splitlines() if line.startswith("kdbook: error:")]
    assert len(errors) == 1 and err.startswith("kdbook: error:") and "Traceback" not in err, err
    assert not out.exists()                                   # nothing written where runs go
    assert _tree(files["ckpt"].parent) == before              # nor beside the inputs
    assert not files["marker"].exists()                       # and no planted code ran


def test_the_console_script_exits_2_too(tmp_path):
    res = subprocess.run([sys.executable, "-c", "from kdbook.cli import console; console()", "train-teacher", "--dataset", "synthetic",
                          "--lr", "-1", "--output-dir", str(tmp_path / "out")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip() == "kdbook: error: lr must be a finite number > 0, got -1."
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("1e6", 1e6), ("5E-2", 0.05), ("0.05", 0.05), ("3", 3)])
def test_scientific_notation_is_a_float_for_every_float_option(text, value, tmp_path):
    from kdbook.runner import prepare
    from kdbook.cli import build_parser, notebook_params
    args = build_parser("distill").parse_args(["distill", "--dataset", "synthetic", "--method", "baseline", "--lr", text,
                                               "--kd-T", text, "--extra", f"{{weight_decay: {text}, momentum: 0.5}}",
                                               "--output-dir", str(tmp_path)])
    cfg = prepare("distill", notebook_params(args))[0].cfg
    assert cfg.lr == value and cfg.kd_T == value and cfg.weight_decay == value
    assert not any(tmp_path.iterdir())


def test_a_read_only_output_dir_is_refused_before_anything_is_written(tmp_path, capsys):
    if os.geteuid() == 0:   # root writes through permission bits; /proc/self takes no new entries even from root
        target = Path("/proc/self/runs")
        if os.access("/proc/self", os.W_OK): pytest.skip("no folder here that root cannot write to")
    else:
        (tmp_path / "ro").mkdir(); (tmp_path / "ro").chmod(0o555)
        target = tmp_path / "ro" / "runs"
    code = run_main(["train-teacher", "--dataset", "synthetic", "--output-dir", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("kdbook: error: output_dir") and "is not writable" in err, err
    assert not target.exists()


def test_a_torchvision_that_does_not_match_torch_is_named_at_start_up(tmp_path):
    "A torchvision built for another torch fails on import ('operator torchvision::nms does not exist'): refused before any run folder."
    fake = tmp_path / "site" / "torchvision"; fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "runs"
    res = subprocess.run([str(Path(sys.executable).parent / "kdbook"), "train-teacher", "--dataset", "digits", "--output-dir", str(out)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2, res.stderr
    assert "does not work with torch" in res.stderr and "operator torchvision::nms does not exist" in res.stderr, res.stderr
    assert "install a matching pair" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
