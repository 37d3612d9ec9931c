"""A new method, added by following CONTRIBUTING.md alone: made from the template notebook (nbs/_method_template.ipynb),
its worked examples pass, it is listed, it trains through the distill notebook, and two processes equal one on the
global batch. The test cannot write into kdbook/methods, so the exported module is loaded as a plugin (KDBOOK_PLUGINS),
which the registry treats as it treats kdbook's own methods; everything runs in subprocesses, so the method never
enters this process's registry."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "nbs" / "_method_template.ipynb"
NAME = "tmpl_graph"   # the new method's name, as a contributor would put it in place of `mymethod`

TRAIN = """
import json, sys
from kdbook.config import RunConfig
from kdbook.launch import run
from kdbook.runner import run_notebook
out = sys.argv[1]
# through the distill notebook, as `kdbook distill` and the sweeps run it
teacher = run(RunConfig(dataset="synthetic", model="resnet20", role="teacher", epochs=2, batch_size=32, output_dir=out, name="t"))
rec = run_notebook("distill", dict(dataset="synthetic", student="resnet8", teacher_ckpt=out + "/t/model.pt", method="%s", epochs=3,
                                   batch_size=32, output_dir=out, extra={"log_every": 5}), log_output=False)
# one process and two on the same global batch
kw = dict(dataset="synthetic", model="convnet_nobn", teacher="convnet_nobn", teacher_ckpt="untrained", method="%s", augment=False,
          device="cpu", precision="no", epochs=2, max_steps_per_epoch=1, batch_size=32, log_every=1, output_dir=out)
one, two = run(RunConfig(name="one", **kw)), run(RunConfig(name="two", processes=2, **kw))
print(json.dumps({"notebook": rec, "one": one, "two": two}))
""" % (NAME, NAME)


def from_template(tmp_path: Path) -> tuple:
    "(the module nbdev would export, the notebook's code in order) of the template with `mymethod` renamed."
    nb = json.loads(TEMPLATE.read_text().replace("mymethod", NAME).replace("MyMethod", "TmplGraph"))
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    code = [s for s in code if not s.startswith("#| default_exp") and "nbdev_export" not in s]
    strip = lambda s: s.split("\n", 1)[1] if s.startswith("#|") else s
    module = tmp_path / f"kdbook_{NAME}.py"
    module.write_text("\n\n".join(strip(s) for s in code if s.startswith("#| export")) + "\n")
    return module, "\n\n".join(strip(s) for s in code) + "\n"


def env_with(module: Path) -> dict:
    path = os.pathsep.join([str(module.parent), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, KDBOOK_PLUGINS=f"{os.environ.get('KDBOOK_PLUGINS', '')},{module.stem}", PYTHONPATH=path)


def test_a_method_made_from_the_template_is_listed_trains_and_equals_itself_over_two_processes(tmp_path):
    module, notebook_code = from_template(tmp_path)
    assert f'@register_method("{NAME}"' in module.read_text() and "mymethod" not in module.read_text()
    # the template's own worked examples pass for the renamed method (what nbdev_test runs in its notebook)
    script = tmp_path / "notebook.py"
    script.write_text(notebook_code)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env_with(module), timeout=300)
    assert r.returncode == 0, r.stderr
    # listed by the command line, with its summary
    kdbook = str(Path(sys.executable).parent / "kdbook")
    r = subprocess.run([kdbook, "list", "methods"], capture_output=True, text=True, env=env_with(module), timeout=300)
    assert r.returncode == 0 and any(l.startswith(NAME + " ") and "method template" in l for l in r.stdout.splitlines()), r.stdout + r.stderr
    # trained through the distill notebook, and one process equals two
    r = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path / "runs")], capture_output=True, text=True, env=env_with(module), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    rec = out["notebook"]
    assert rec["status"] == "completed" and rec["config"]["method"] == NAME
    losses = [e["train"] for e in rec["epochs"]]
    assert f"{NAME}.graph" in losses[0] and losses[-1]["ce"] < losses[0]["ce"]
    one, two = out["one"], out["two"]
    assert two["machine"]["processes"] == 2
    first1, first2 = one["epochs"][0]["train"], two["epochs"][0]["train"]
    assert first1.keys() == first2.keys()
    for term in first1:   # step 1: the same weights and the same global batch, only the summation order differs
        assert abs(first1[term] - first2[term]) <= 1e-6 * abs(first1[term]) + 1e-7, (term, first1[term], first2[term])
