"""kdbook reproduce / report on a toy table: failures recorded while the others complete, a killed
sweep resumed without rerunning what was complete, shards merged by copying folders, bad input."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

from kdbook.cli import main
from kdbook.results import read_record

TOY = """
title: toy table
source: tests
published: toy
dataset: cifar10
teachers:
  r8: {model: resnet8, dataset: cifar10}
rows:
  r8-r8: {label: "resnet8 -> resnet8", teacher: r8, student: resnet8}
columns:
  Baseline: {method: baseline}
  KD: {method: kd}
  Broken: {method: nan_after, method_params: {steps: 1}}
scales:
  smoke: {seeds: 1}
"""
PUBLISHED = """
source: made up for the test
values:
  r8-r8: {Baseline: "50.00 ± 1.00", KD: "55.00", Broken: "nan", Teacher: "60.0"}
"""


@pytest.fixture
def specs(tmp_path, monkeypatch):
    root = tmp_path / "specs"
    (root / "experiments").mkdir(parents=True); (root / "paper_tables").mkdir()
    (root / "experiments" / "toy.yaml").write_text(TOY)
    (root / "paper_tables" / "toy.yaml").write_text(PUBLISHED)
    monkeypatch.setenv("KDBOOK_SPECS", str(root))
    return root


KDBOOK = str(Path(sys.executable).parent / "kdbook")   # the console script of this environment


def kdbook(*args, **kw):
    return subprocess.run([KDBOOK, *args], capture_output=True, text=True, **kw)


def test_failed_run_is_recorded_and_the_others_complete(specs, tmp_path):
    out = tmp_path / "runs"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--output-dir", str(out))
    assert r.returncode == 1, r.stdout + r.stderr          # a failed run makes the sweep exit 1
    sweep = out / "toy" / "smoke" / "r8-r8"
    assert read_record(sweep / "Baseline" / "seed0")["status"] == "completed"
    assert read_record(sweep / "KD" / "seed0")["status"] == "completed"
    broken = read_record(sweep / "Broken" / "seed0")
    assert broken["status"] == "failed" and "nan" in broken["error"].lower(), broken["error"]
    assert "Broken/seed0: failed" in r.stdout
    started = read_record(sweep / "KD" / "seed0")["timings"]["started"]
    # run again: the completed runs are skipped (their records untouched), the failed one is retried
    r2 = kdbook("reproduce", "toy", "--scale", "smoke", "--output-dir", str(out))
    assert "r8-r8/KD/seed0: completed, skipped" in r2.stdout
    assert read_record(sweep / "KD" / "seed0")["timings"]["started"] == started
    # the report counts completed runs only and lists the failure
    r3 = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(out))
    assert r3.returncode == 0, r3.stderr
    cells = (out / "toy" / "smoke" / "report" / "cells.csv").read_text()
    assert "Broken" in cells and (out / "toy" / "smoke" / "report" / "report.ipynb").exists()
    md = (out / "toy" / "smoke" / "report" / "report.md").read_text()
    assert "## Failed runs" in md and "r8-r8/Broken/seed0" in md
    # a report to commit: its records name no machine, and the report made again from them reads the same
    rd = tmp_path / "committed"
    r4 = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(out), "--report-dir", str(rd), "--with-records")
    assert r4.returncode == 0 and "3 finished records copied" in r4.stdout, r4.stdout + r4.stderr
    copied = sorted(p.relative_to(rd / "records") for p in (rd / "records").rglob("record.json"))
    assert [str(p) for p in copied] == ["toy/smoke/r8-r8/Baseline/seed0/record.json", "toy/smoke/r8-r8/Broken/seed0/record.json",
                                        "toy/smoke/r8-r8/KD/seed0/record.json"]   # the smoke scale's teacher is untrained: no run
    for p in [*(rd / "records").rglob("record.json"), rd / "report.ipynb"]:
        assert str(tmp_path) not in p.read_text(), p
    r5 = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(rd / "records"), "--report-dir", str(tmp_path / "again"))
    assert r5.returncode == 0, r5.stderr
    assert (tmp_path / "again" / "cells.csv").read_text() == (rd / "cells.csv").read_text() == cells


def test_the_cluster_road_runs_records_and_skips_as_the_local_one(specs, tmp_path):
    # submitit's local executor: each batch of ready runs a job array, as on Slurm, into the same folders
    out = tmp_path / "runs"
    args = ["reproduce", "toy", "--scale", "smoke", "--output-dir", str(out), "--launcher", "submitit-local", "--workers", "3",
            "--slurm", "{timeout_min: 10}"]
    r = kdbook(*args)
    assert r.returncode == 1, r.stdout + r.stderr   # the broken column fails, the others complete
    sweep = out / "toy" / "smoke" / "r8-r8"
    assert [read_record(sweep / c / "seed0")["status"] for c in ("Baseline", "KD", "Broken")] == ["completed", "completed", "failed"]
    assert "nan" in read_record(sweep / "Broken" / "seed0")["error"].lower()
    assert "epoch 1/1" in (sweep / "KD" / "seed0" / "run.log").read_text()   # the run's own output, where the local road puts it
    again = kdbook(*args)
    assert "r8-r8/KD/seed0: completed, skipped" in again.stdout
    status = kdbook("reproduce", "toy", "--scale", "smoke", "--output-dir", str(out), "--status")
    assert "2/3 done" in status.stdout and "1 failed" in status.stdout, status.stdout
    bad = kdbook("reproduce", "toy", "--scale", "smoke", "--output-dir", str(tmp_path / "other"), "--launcher", "submitit-local",
                 "--slurm", "{gpus: 1}")
    assert bad.returncode == 2 and "slurm parameter not understood by submitit" in bad.stderr, bad.stderr
    assert not (tmp_path / "other" / "toy").exists()   # nothing written


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["killed", "ctrl-c", "sigterm"])
def test_stopped_sweep_resumes_without_rerunning_completed_runs(specs, tmp_path, sig):
    out = tmp_path / "runs"
    args = ["reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--seeds", "3", "--output-dir", str(out)]
    # its own process group, with Ctrl-C's default action even if this test runner ignores SIGINT
    proc = subprocess.Popen([KDBOOK, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = out / "toy" / "smoke" / "r8-r8" / "Baseline" / "seed0"
    deadline = time.time() + 300
    while time.time() < deadline:
        if (first / "record.json").exists() and read_record(first)["status"] == "completed": break
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL); pytest.fail("the first run did not complete")
    if sig == signal.SIGTERM:   # as a scheduler stops a job: every process of it (the notebooks' kernels run in sessions of their own)
        from kdbook.core import descendants
        for pid in [proc.pid, *descendants(proc.pid)]: os.kill(pid, signal.SIGTERM)
    else: os.killpg(proc.pid, sig)   # the sweep and its running notebook: without warning, or as Ctrl-C in a terminal
    assert proc.wait(timeout=120) == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}[sig]
    if sig == signal.SIGTERM:   # the run in flight recorded itself interrupted, not failed
        states = {read_record(first.parent / f"seed{s}")["status"] for s in (1, 2) if (first.parent / f"seed{s}" / "record.json").exists()}
        assert "failed" not in states and "running" not in states, states
    kept = read_record(first)
    status = kdbook(*args, "--status")
    assert status.returncode == 0 and "r8-r8/Baseline/seed0" in status.stdout and "completed" in status.stdout
    r = kdbook(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "r8-r8/Baseline/seed0: completed, skipped" in r.stdout
    assert read_record(first) == kept
    for s in range(3):
        assert read_record(first.parent / f"seed{s}")["status"] == "completed"


def test_shards_merge_by_copying_folders(specs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for i, out in ((1, a), (2, b)):
        r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--seeds", "2", "--shard", f"{i}/2",
                   "--output-dir", str(out))
        assert r.returncode == 0, r.stdout + r.stderr
    assert {p.name for p in (a / "toy/smoke/r8-r8/Baseline").iterdir()} == {"seed0"}
    assert {p.name for p in (b / "toy/smoke/r8-r8/Baseline").iterdir()} == {"seed1"}
    shutil.copytree(b / "toy", a / "toy", dirs_exist_ok=True)
    from kdbook.report import write_report
    res = write_report("toy", "smoke", a)
    cell = res["cells"].set_index(["row", "col"]).loc[("r8-r8", "Baseline")]
    accs = [read_record(a / "toy/smoke/r8-r8/Baseline" / f"seed{s}")["last_top1"] for s in (0, 1)]
    assert cell.n == 2 and abs(cell["last"] - sum(accs) / 2) < 1e-9
    assert cell.published == 50.0 and cell.published_std == 1.0


@pytest.mark.parametrize("args, message", [
    (["reproduce", "toi"], "Did you mean 'toy'"),
    (["reproduce", "toy", "--scale", "gpu"], "unknown scale of toy 'gpu'"),
    (["reproduce", "toy", "--shard", "0/2"], "is not i/n"),
    (["reproduce", "toy", "--workers", "0"], "workers"),
    (["reproduce", "toy", "--only", "*/FitNet"], "unknown cell pattern of toy '*/FitNet'"),
    (["report", "toy", "--scale", "smoke"], "no runs of toy"),
])
def test_bad_input_exits_2_and_writes_nothing(specs, tmp_path, capsys, args, message):
    out = tmp_path / "runs"
    assert main([*args, "--output-dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_report_flags_cells_whose_runs_differ_in_numerics(specs, tmp_path):
    # float reductions change with the thread count: 58.27 with 1 thread, 59.03 with 2 (IRG Table 4 baseline, seed 0)
    out = tmp_path / "runs"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--seeds", "2", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    from kdbook.report import write_report
    assert "differ in numerics" not in write_report("toy", "smoke", out)["markdown"]
    seed1 = out / "toy/smoke/r8-r8/Baseline/seed1/record.json"
    rec = json.loads(seed1.read_text())
    assert rec["environment"]["numerics"]["intra_op_threads"] >= 1
    rec["environment"]["numerics"]["intra_op_threads"] = 7
    seed1.write_text(json.dumps(rec))
    md = write_report("toy", "smoke", out)["markdown"]
    assert "## Cells whose runs differ in numerics" in md
    line = next(l for l in md.splitlines() if l.startswith("- r8-r8/Baseline:"))
    assert "7 thread(s)" in line


def test_the_report_flags_cells_whose_seeds_differ_in_configuration(specs, tmp_path):
    "Seeds that differ in seed, subset, name and paths are one configuration; other teacher weights or another weight decay are named."
    out = tmp_path / "runs"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--seeds", "2", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    from kdbook.report import write_report
    seed1 = out / "toy/smoke/r8-r8/Baseline/seed1/record.json"
    rec = json.loads(seed1.read_text())
    assert (rec["config"]["seed"], rec["config"]["subset_seed"]) == (1, 1)   # they do differ from seed 0's
    md = write_report("toy", "smoke", out)["markdown"]
    assert "Configurations: the runs of each cell share one" in md and "differ in configuration" not in md
    # one teacher named two ways: by this checkout's folder (a sweep's record) and portably (a committed record's)
    from kdbook.core import package_root
    seed0 = out / "toy/smoke/r8-r8/Baseline/seed0/record.json"
    rec0 = json.loads(seed0.read_text())
    rec0["config"]["teacher_ckpt"] = f"{package_root()}/data/teachers/t.pt"
    seed0.write_text(json.dumps(rec0))
    rec["config"]["teacher_ckpt"] = "$KDBOOK/data/teachers/t.pt"
    seed1.write_text(json.dumps(rec))
    md = write_report("toy", "smoke", out)["markdown"]
    assert "Configurations: the runs of each cell share one" in md and "differ in configuration" not in md
    # two teachers' weights behind one path are two teachers
    for r_, path, sha in ((rec0, seed0, "a" * 64), (rec, seed1, "b" * 64)):
        r_["config"]["teacher_ckpt"] = "$KDBOOK/data/teachers/t.pt"
        r_["teacher"] = {"sha256": sha}
        path.write_text(json.dumps(r_))
    md = write_report("toy", "smoke", out)["markdown"]
    line = next(l for l in md.splitlines() if l.startswith("- r8-r8/Baseline: teacher_ckpt"))
    assert "seed 0 'sha256 aaaaaaaaaaaa', seed 1 'sha256 bbbbbbbbbbbb'" in line
    rec["teacher"] = {"sha256": "a" * 64}
    rec["config"]["weight_decay"] = 0.125
    seed1.write_text(json.dumps(rec))
    md = write_report("toy", "smoke", out)["markdown"]
    assert "Configurations: 1 cell(s) pool runs of different settings" in md
    assert "## Cells whose runs differ in configuration" in md
    line = next(l for l in md.splitlines() if l.startswith("- r8-r8/Baseline: weight_decay"))
    assert "seed 1 0.125" in line and ";" not in line   # only the setting that differs


def test_the_report_prints_each_gain_over_the_baseline_paired_by_seed(specs, tmp_path):
    "Three seeds of Baseline and KD: the printed gain, its interval and the verdict are those of the records' paired differences."
    from scipy import stats
    out, rep = tmp_path / "runs", tmp_path / "report"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--only", "*/KD", "--seeds", "3", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    r = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(out), "--report-dir", str(rep))
    assert r.returncode == 0, r.stdout + r.stderr
    top1 = {(c, s): read_record(out / f"toy/smoke/r8-r8/{c}/seed{s}")["last_top1"] for c in ("Baseline", "KD") for s in range(3)}
    diffs = [top1["KD", s] - top1["Baseline", s] for s in range(3)]
    ci = stats.ttest_rel([top1["KD", s] for s in range(3)], [top1["Baseline", s] for s in range(3)]).confidence_interval(0.95)
    mean = sum(diffs) / 3
    line = f"| KD | {mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}] |"
    assert line in r.stdout, r.stdout
    row = next(l for l in r.stdout.splitlines() if l.startswith(line))
    assert "| 3 | +5.00 | – |" in row, row   # the toy's published gain (55 - 50), no verdict at the smoke scale
    assert (rep / "gains.png").exists() and "![gains](gains.png)" in (rep / "report.md").read_text()
    boot = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(out), "--report-dir", str(rep), "--interval", "bootstrap")
    assert boot.returncode == 0 and "percentile bootstrap" in boot.stdout and f"| KD | {mean:+.2f} [" in boot.stdout


def test_missing_dataset_stops_the_sweep_before_any_run(specs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDBOOK_OFFLINE", "1")
    out = tmp_path / "runs"
    assert main(["reproduce", "toy", "--scale", "cpu", "--data-dir", str(tmp_path / "empty"), "--output-dir", str(out)]) == 2
    assert "cifar10" in capsys.readouterr().err
    assert not out.exists()


def test_every_runnable_cell_of_every_spec_is_a_valid_run():
    "Each cell of data/experiments, at the smoke scale, is accepted by the distill notebook's checks (names, weights, hyperparameters)."
    import importlib.util
    from kdbook.runner import prepare
    from kdbook.reproduce import plan
    from kdbook.tables import experiment_names, load_spec
    has_clip = importlib.util.find_spec("open_clip") is not None
    checked = 0
    for name in experiment_names():
        spec = load_spec(name)
        for job in plan(spec, "smoke", 1, "/tmp/kdbook-never-written")["students"]:
            if job.params.get("teacher", "").startswith("clip:") and not has_clip: continue
            cfg = prepare("distill", job.params)[0].cfg
            assert cfg.scale == "smoke" and cfg.method == job.cell.params["method"], job.key
            checked += 1
    assert checked > 100


GRID = """
title: a sensitivity study
source: tests
dataset: cifar10
teachers:
  r8: {model: resnet8, dataset: cifar10}
rows:
  r8-r8: {label: "resnet8 -> resnet8", teacher: r8, student: resnet8}
columns:
  Baseline: {method: baseline}
  Toy: {method: toy_relational, grid: {log_every: [1, 2], batch_size: [16, 32]}}
scales:
  tiny: {base: smoke, seeds: 1}
"""


def test_a_grid_table_at_a_scale_of_its_own_runs_and_is_drawn_as_a_sensitivity_figure(specs, tmp_path):
    # both keys are run settings here (the recipe); a method's hyperparameter would go to its method_params
    (specs / "experiments" / "grid.yaml").write_text(GRID)
    out = tmp_path / "runs"
    r = kdbook("reproduce", "grid", "--scale", "tiny", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    cells = sorted(p.name for p in (out / "grid" / "tiny" / "r8-r8").iterdir())
    assert cells == ["Baseline", "Toy@log_every=1,batch_size=16", "Toy@log_every=1,batch_size=32",
                     "Toy@log_every=2,batch_size=16", "Toy@log_every=2,batch_size=32"]
    rec = read_record(out / "grid" / "tiny" / "r8-r8" / "Toy@log_every=2,batch_size=32" / "seed0")
    assert (rec["config"]["log_every"], rec["config"]["batch_size"], rec["config"]["scale"]) == (2, 32, "tiny")
    r = kdbook("report", "grid", "--scale", "tiny", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    report = out / "grid" / "tiny" / "report"
    md = (report / "report.md").read_text()
    assert (report / "sensitivity.png").exists() and "## Sensitivity" in md and "| log_every | batch_size = 16 | batch_size = 32 |" in md
    assert "No published values" in md
    assert "| row | Baseline | Teacher |" in md   # the grid's cells are under Sensitivity and in the long table, not columns
    assert kdbook("reproduce", "grid", "--scale", "cpu-e15", "--output-dir", str(out)).returncode == 2   # not a scale of this spec
    # a study of grid columns alone: no method curves to draw, the sensitivity figure still is
    (specs / "experiments" / "gridonly.yaml").write_text(GRID.replace("  Baseline: {method: baseline}\n", ""))
    shutil.copytree(out / "grid", out / "gridonly", ignore=shutil.ignore_patterns("report"))
    r = kdbook("report", "gridonly", "--scale", "tiny", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    drawn = sorted(p.name for p in (out / "gridonly" / "tiny" / "report").glob("*.png"))
    assert drawn == ["sensitivity.png"], drawn


def test_report_analyses_draw_from_the_weights_and_redraw_from_the_committed_copy(specs, tmp_path):
    out, rep = tmp_path / "runs", tmp_path / "report"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--only", "*/KD", "--seeds", "2", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    # no weights copied without the records they belong to; nothing written
    r = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(out), "--report-dir", str(rep), "--with-models")
    assert r.returncode == 2 and "add --with-records" in r.stderr and not rep.exists()
    r = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(out), "--report-dir", str(rep), "--with-records", "--with-models", "--analyses")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {"analyses.md", "analyses.ipynb", "fig6_teacher_depths.png", "fig7_students.png", "fig8_test_curves.png"} <= {p.name for p in rep.iterdir()}
    assert "[analyses.md](analyses.md)" in (rep / "report.md").read_text()
    md = (rep / "analyses.md").read_text()
    assert "| Baseline |" in md and "| KD |" in md and "Teacher: untrained resnet8" in md
    for name in ("analyses.ipynb", "analyses.md", "report.ipynb"):   # files to commit name no folder of this machine
        assert str(tmp_path) not in (rep / name).read_text(), name
    # the first seed's weights of each cell beside its record, not the others (a report to commit stays small)
    models = sorted(str(p.relative_to(rep / "records")) for p in (rep / "records").rglob("model.pt"))
    assert models == ["toy/smoke/r8-r8/Baseline/seed0/model.pt", "toy/smoke/r8-r8/KD/seed0/model.pt"]
    # redrawn from the committed copy alone: the same separability numbers (same weights, same images, same seed)
    again = tmp_path / "again"
    r = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(rep / "records"), "--report-dir", str(again), "--analyses")
    assert r.returncode == 0, r.stdout + r.stderr
    table = lambda text: [l for l in text.splitlines() if l.startswith("| ") and "5-NN" not in l]
    assert table((again / "analyses.md").read_text()) == table(md)
    # what the toy's runs cannot give is said, by section and by what it lacked
    assert "## Not drawn" in md and "- `gkd_blocks`: no chosen run of method rkd_d or gkd." in md
    # a spec names the analyses it wants: only those are drawn; a name that is no analysis is refused before anything is read
    spec = specs / "experiments" / "toy.yaml"
    spec.write_text(spec.read_text() + "analyses: [test_curves]\n")
    only = tmp_path / "only"
    r = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(rep / "records"), "--report-dir", str(only), "--analyses")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in only.glob("fig*.png")) == ["fig8_test_curves.png"]
    spec.write_text(spec.read_text().replace("analyses: [test_curves]", "analyses: [test_curvez]"))
    r = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(rep / "records"), "--report-dir", str(tmp_path / "bad"), "--analyses")
    assert r.returncode == 2 and "test_curvez" in r.stderr and "test_curves" in r.stderr, r.stderr


def test_the_report_notebook_reads_relative_paths_from_the_repository_root_wherever_it_runs(specs, tmp_path):
    # JupyterLab starts a kernel in nbs/experiments/, papermill wherever it is called: the sweep named relative to the
    # checkout is found all the same, and the report lands beside it (kdbook report's copies say relative_to "here")
    import papermill as pm
    from kdbook.data import repo_root
    from kdbook.runner import notebooks_dir
    out, elsewhere = tmp_path / "runs", tmp_path / "kernel-cwd"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/KD", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    elsewhere.mkdir()
    pm.execute_notebook(str(notebooks_dir() / "report.ipynb"), str(tmp_path / "executed.ipynb"), cwd=str(elsewhere), progress_bar=False,
                        parameters=dict(experiment="toy", scale="smoke", output_dir=os.path.relpath(out, repo_root())))
    assert "| resnet8 -> resnet8 |" in (out / "toy" / "smoke" / "report" / "report.md").read_text()
    assert list(elsewhere.iterdir()) == []


def test_analyses_refuse_a_sweep_without_weights_before_writing(specs, tmp_path):
    out, rep = tmp_path / "runs", tmp_path / "report"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    (out / "toy/smoke/r8-r8/Baseline/seed0/model.pt").unlink()
    r = kdbook("report", "toy", "--scale", "smoke", "--output-dir", str(out), "--report-dir", str(rep), "--analyses")
    assert r.returncode == 2 and "kept its weights (model.pt)" in r.stderr and not rep.exists()


PROBED = TOY.replace('r8-r8: {label: "resnet8 -> resnet8", teacher: r8, student: resnet8}',
                     'r8-r8: {label: "resnet8 -> resnet8", teacher: r8, student: resnet8, probe: stl10}')


def test_a_probe_row_reports_the_probe_and_reruns_only_the_probe(specs, tmp_path):
    # HKD Table 4's protocol: the run trains as usual, then its frozen features are probed (smoke: on the offline digits)
    (specs / "experiments" / "toy.yaml").write_text(PROBED)
    out = tmp_path / "runs"
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    run = out / "toy/smoke/r8-r8/Baseline/seed0"
    probe = json.loads((run / "probe-digits.json").read_text())
    assert probe["status"] == "completed" and probe["dataset"] == "digits" and probe["trained_on"] == "synthetic"
    from kdbook.report import write_report
    cells = write_report("toy", "smoke", out)["cells"].set_index(["row", "col"])
    assert cells.loc[("r8-r8", "Baseline"), "last"] == pytest.approx(probe["top1"])   # the probe's number, not the run's test top-1
    assert read_record(run)["last_top1"] != probe["top1"]
    # a lost probe is redone without retraining the network
    (run / "probe-digits.json").unlink()
    trained = read_record(run)["timings"]["finished"]
    r = kdbook("reproduce", "toy", "--scale", "smoke", "--only", "*/Baseline", "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert read_record(run)["timings"]["finished"] == trained
    assert json.loads((run / "probe-digits.json").read_text())["top1"] == probe["top1"]   # seeded: the same probe


def test_a_probe_dataset_that_is_missing_stops_the_sweep_before_any_run(specs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDBOOK_OFFLINE", "1")   # STL-10 is 2.6 GB: never fetched by a test
    (specs / "experiments" / "toy.yaml").write_text(PROBED.replace("  smoke: {seeds: 1}", "  smoke: {seeds: 1, probe: stl10}"))
    out = tmp_path / "runs"
    assert main(["reproduce", "toy", "--scale", "smoke", "--output-dir", str(out), "--data-dir", str(tmp_path / "nodata")]) == 2
    assert "stl10" in capsys.readouterr().err and not (out / "toy").exists()
