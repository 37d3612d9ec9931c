"""JupyterLab as a person uses it: a real JupyterLab server, a headless Chromium driven by Playwright, a notebook
opened, "Run All Cells" chosen from the Run menu, the kernel waited for, the page read for errors and for the
result, a screenshot kept. Marked `browser`: `pytest -m "not browser"` skips it; it skips itself when Chromium
or Playwright is missing, unless KDBOOK_BROWSER_TESTS=require (CI sets it, after `.ci/install-browser.sh`)."""
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("KDBOOK_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
TOKEN = "kdbook-browser-test"

if not CHROMIUM or importlib.util.find_spec("playwright") is None:
    why = "needs Chromium (Debian: apt-get install chromium) and Playwright (the dev extra)"
    if os.environ.get("KDBOOK_BROWSER_TESTS") == "require": raise RuntimeError(f"the JupyterLab test {why}")
    pytest.skip(why, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jupyter")


@pytest.fixture(scope="module")
def lab(lab_home):
    "A JupyterLab server on a copy of the notebooks (what it saves stays there), with its own settings and workspaces."
    home, port = lab_home, free_port()
    served = home / "repo"   # the notebooks and settings.ini (nbdev's)
    shutil.copytree(ROOT / "nbs", served / "nbs"); shutil.copy(ROOT / "settings.ini", served)
    # the distill notebook's one change: a fresh output folder (the repository's runs/ may hold its runs complete already)
    distill = served / "nbs" / "experiments" / "distill.ipynb"
    nb = json.loads(distill.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    source = "".join(cell["source"]); assert 'output_dir = "runs"' in source
    cell["source"] = source.replace('output_dir = "runs"', f'output_dir = "{home / "runs"}"')
    distill.write_text(json.dumps(nb))
    env = {k: v for k, v in os.environ.items() if k != "IN_TEST"}   # a person's session, not nbdev_test's smoke runs
    settings = {"notebook-extension/tracker": {"windowingMode": "none"},   # every cell in the page, so that all can be read
                "docmanager-extension/plugin": {"autosave": False}, "apputils-extension/notification": {"fetchNews": "false"}}
    for name, value in settings.items():
        f = home / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(value))
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={served}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try: urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2); break
        except OSError: time.sleep(0.5)
    else:
        proc.terminate(); raise RuntimeError(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()[-2000:]}")
    yield url
    proc.terminate(); proc.wait(timeout=30); log.close()


@pytest.fixture(scope="module")
def fresh_runs(lab_home) -> Path:
    "The output folder the served distill notebook writes to."
    return lab_home / "runs"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def run_all_cells(browser, lab: str, notebook: str, shot: str, timeout_s: int = 600) -> str:
    "Open `notebook`, choose Run > Run All Cells, wait until every code cell has run; return the notebook's text."
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?token={TOKEN}&reset")   # a fresh workspace: this notebook alone
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
    page.wait_for_function("() => document.querySelector('.jp-StatusBar-Widget') && "
                           "[...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e => e.textContent.includes('Idle'))",
                           timeout=120_000)   # the kernel has started and is idle
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    t0, clicked = time.time(), 0.0
    while True:   # every code cell has its execution count
        prompts = [p.strip() for p in page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_text_contents()]
        if prompts and all(p[1:-2].isdigit() for p in prompts): break
        if all(p == "[ ]:" for p in prompts) and time.time() - clicked > 30:   # nothing started (yet): Run > Run All Cells
            page.locator(".jp-Notebook .jp-Cell").first.click()   # the notebook has the focus, as after a person's click
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            clicked = time.time()
        if time.time() - t0 > timeout_s:
            page.screenshot(path=str(ARTIFACTS / shot)); raise TimeoutError(f"{notebook}: cells not run after {timeout_s} s: {prompts}")
        time.sleep(1)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").last.scroll_into_view_if_needed()   # the result, in the picture
    page.screenshot(path=str(ARTIFACTS / shot), full_page=False)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count()
    text = page.locator(".jp-Notebook").inner_text()
    page.close()
    assert errors == 0 and "Traceback" not in text, f"{notebook}: an error on the page (screenshot {ARTIFACTS / shot})"
    return text


def test_the_distill_notebook_runs_as_shipped_in_jupyterlab(lab, browser, fresh_runs):
    "As shipped, but for its output folder: a fresh one, so that choosing Run All Cells must train the teacher and the student."
    t0 = time.time()
    text = run_all_cells(browser, lab, "nbs/experiments/distill.ipynb", "jupyterlab-distill.png")
    assert "completed" in text and "best_top1" in text   # show_run's result lines, on the page
    for run in ("digits_resnet20_baseline_e15_s0", "digits_resnet20-to-resnet8_kd_e15_s0"):   # the teacher first, then the student
        rec = json.loads((fresh_runs / run / "record.json").read_text())
        assert rec["status"] == "completed" and len(rec["epochs"]) == 15, run
        from datetime import datetime
        assert datetime.fromisoformat(rec["timings"]["started"]).timestamp() >= t0 - 1   # trained now, from the menu


def test_a_method_notebook_runs_in_jupyterlab(lab, browser):
    text = run_all_cells(browser, lab, "nbs/11_irg.ipynb", "jupyterlab-irg.png")
    assert "What the loss sees" in text
