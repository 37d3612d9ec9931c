"Each private part of a dependency that kdbook uses (kdbook.compat) still does its job on the installed versions."
import argparse
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from kdbook.compat import (allow_negative_numbers, clear_momentum, ddp_ignore_buffers, quiet_orphaned_kernel_tasks, register_papermill_io,
                           reset_accelerate_state)


def test_reset_accelerate_state_lets_a_second_accelerator_take_other_settings():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    Accelerator(cpu=True, mixed_precision="no")
    assert AcceleratorState().mixed_precision == "no"
    with pytest.raises(ValueError):   # without the reset, accelerate refuses a second configuration in one process
        Accelerator(cpu=True, mixed_precision="bf16")
    reset_accelerate_state()
    assert Accelerator(cpu=True, mixed_precision="bf16").mixed_precision == "bf16"
    reset_accelerate_state()


def test_ddp_leaves_ignored_buffers_alone(tmp_path):
    # one gloo process: DDP broadcasts rank 0's buffers at each forward unless they are ignored; a buffer that DDP
    # tracks is listed in its modules_buffers, an ignored one is not
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 2)
                self.register_buffer("bank", torch.zeros(3))
                self.register_buffer("kept", torch.zeros(1))
        plain, ignoring = Net(), Net()
        ddp_ignore_buffers(ignoring, ["bank"])
        tracked = lambda m: {id(b) for b in nn.parallel.DistributedDataParallel(m).modules_buffers}
        assert id(plain.bank) in tracked(plain)
        assert id(ignoring.bank) not in tracked(ignoring) and id(ignoring.kept) in tracked(ignoring)
    finally:
        dist.destroy_process_group()


def test_clear_momentum_through_accelerates_wrapper():
    from accelerate import Accelerator
    reset_accelerate_state()
    acc = Accelerator(cpu=True)
    p = nn.Parameter(torch.ones(3))
    opt = acc.prepare(torch.optim.SGD([p], lr=0.1, momentum=0.9))
    p.grad = torch.ones(3); opt.step()
    assert len(opt.optimizer.state) == 1
    clear_momentum(opt)
    assert len(opt.optimizer.state) == 0 and opt.param_groups[0]["lr"] == 0.1
    p.grad = torch.ones(3); opt.step()   # the first step after: plain SGD, as with a new optimizer
    torch.testing.assert_close(p.detach(), torch.ones(3) - 0.2)
    reset_accelerate_state()


def test_register_papermill_io_once(tmp_path):
    from papermill.iorw import papermill_io

    class Handler:
        @staticmethod
        def read(path): return "read " + path
    register_papermill_io("kdbook-test://", Handler)
    register_papermill_io("kdbook-test://", Handler)
    assert sum(s == "kdbook-test://" for s, _ in papermill_io._handlers) == 1
    assert papermill_io.read("kdbook-test://x.ipynb") == "read kdbook-test://x.ipynb"


ORPHAN = """
import asyncio, gc
from nbclient.exceptions import DeadKernelError
{quiet}
async def watch(): raise DeadKernelError("Kernel died")   # what nbclient's kernel-watch task ends in once the kernel is gone
loop = asyncio.new_event_loop()
task = loop.create_task(watch())
loop.run_until_complete(asyncio.sleep(0.01))               # the task ends; no one awaits it
del task; gc.collect()
print("exited")
"""

def test_an_orphaned_dead_kernel_task_is_silent_once_quieted():
    for quiet, noisy in (("", True), ("from kdbook.compat import quiet_orphaned_kernel_tasks; quiet_orphaned_kernel_tasks()", False)):
        res = subprocess.run([sys.executable, "-c", ORPHAN.format(quiet=quiet)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and res.stdout.strip() == "exited", res.stderr
        assert ("Task exception was never retrieved" in res.stderr) == noisy, res.stderr
        assert ("DeadKernelError" in res.stderr) == noisy, res.stderr


def test_negative_numbers_read_as_values():
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float)
    with pytest.raises(SystemExit):   # argparse's own pattern takes -1e-3 for an option: "expected one argument"
        p.parse_args(["--lr", "-1e-3"])
    allow_negative_numbers(p)
    assert p.parse_args(["--lr", "-1e-3"]).lr == -1e-3 and p.parse_args(["--lr", "-.5"]).lr == -0.5


def test_every_runtime_requirement_has_an_upper_bound_that_the_installed_version_meets():
    # compatible-release bounds (~=) at the versions kdbook is tested with: a new major release cannot be pulled in
    import configparser
    from importlib.metadata import version
    from pathlib import Path
    from packaging.requirements import Requirement
    ini = configparser.ConfigParser()
    ini.read(Path(__file__).parents[1] / "settings.ini")
    reqs = [Requirement(r) for r in ini["DEFAULT"]["requirements"].split()]
    assert reqs and all(any(s.operator in ("~=", "<", "<=", "==") for s in r.specifier) for r in reqs), reqs
    assert all(r.specifier.contains(version(r.name), prereleases=True) for r in reqs), [(r, version(r.name)) for r in reqs]
