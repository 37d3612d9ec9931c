"Shared set-up: the test plugin module is importable here and in worker processes."
import os, sys, tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
os.environ["KDBOOK_PLUGINS"] = "kdbook_test_plugins"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def temporary_files_under_pytest(tmp_path_factory):
    "What the tests and the processes they start (accelerate's launcher, Jupyter kernels) put in a temporary folder goes under pytest's own, which pytest prunes: a test run leaves nothing in /tmp."
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    tempfile.tempdir = None   # gettempdir() reads TMPDIR again
    yield
    if old is None: os.environ.pop("TMPDIR")
    else: os.environ["TMPDIR"] = old
    tempfile.tempdir = None


@pytest.fixture
def synthetic_run(tmp_path):
    "A factory of small synthetic-data run configs writing under tmp_path (fp32 unless a test asks for more)."
    from kdbook.config import RunConfig

    def make(**kw):
        base = dict(dataset="synthetic", model="resnet8", epochs=2, batch_size=32, output_dir=str(tmp_path), log_every=5, precision="no")
        base.update(kw)
        return RunConfig(**base)
    return make


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium (skip with -m 'not browser')")
