"""CUDA correctness without a GPU: every registered method's training step, forward, on PyTorch's fake tensors on a
`cuda` device (torch._subclasses.fake_tensor.FakeTensorMode: shapes, dtypes and devices are carried, nothing is
computed). Student, teacher, batch, batched views, memory banks and the method's own modules all live on fake CUDA, as
accelerate puts them there; any op that mixes a CPU and a CUDA tensor raises FakeTensorDeviceMismatchError, so a
tensor created on the CPU inside the step (a constant, an index, a bank) fails the test.

The same pass lists the step's host syncs: a value read back to the host (`.item()`, `.tolist()`, `bool(tensor)` in a
Python branch) or a copy from CUDA to the CPU. Each stalls a GPU's queue; the step must have none (kdbook reads its
loss terms at `log_every`, outside the forward).

Backward does not run on fake CUDA tensors (autograd's engine needs a real device), so only the forward is checked;
the optimizer step touches no tensor of a method's own.
"""
import traceback
from unittest import mock

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from kdbook.config import RunConfig, resolve
from kdbook.data import _stats, dataset_info, epoch_generator, make_loaders
from kdbook.distill import METHODS
from kdbook.train import build_module
from test_methods import RUNS   # every registered method with its smoke settings, and the variants

SCALAR = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default}


class HostSyncs(TorchDispatchMode):
    "Records each read of a device value by the host, or copy to the CPU, with the line of kdbook that asked; answers reads with 0."
    def __init__(self):
        super().__init__()
        self.found = []

    def where(self) -> str:
        frames = [f for f in traceback.extract_stack() if "/kdbook/" in f.filename and "/tests/" not in f.filename]
        return f"{frames[-1].filename.rsplit('/kdbook/', 1)[1]}:{frames[-1].lineno}" if frames else "?"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        if func in SCALAR and any(t.device.type == "cuda" for t in tensors):
            self.found.append(("read", self.where()))
            return 0
        out = func(*args, **kwargs)
        outs = [o for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
        if any(t.device.type == "cuda" for t in tensors) and any(o.device.type == "cpu" for o in outs):
            self.found.append(("copy to cpu", self.where()))
        return out


def on_fake_cuda(mode: FakeTensorMode, module: torch.nn.Module | None):
    "Move a module's parameters and buffers to fake CUDA in place, as accelerate's prepare() moves them to the device."
    if module is not None:
        module._apply(lambda t: mode.from_tensor(t).to("cuda"))


def step_on_fake_cuda(key: str, precision: str) -> list:
    "One forward of `key`'s training step on fake CUDA; returns the host syncs it made."
    run = RUNS[key]
    cfg = RunConfig(dataset="synthetic", model=run["student"], teacher="resnet20", teacher_ckpt="untrained", method=run.get("method", key),
                    method_params=run.get("method_params") or {}, batch_size=16, precision="no", device="cpu")
    r = resolve(cfg, check_data=False)
    cfg = r.cfg
    data = make_loaders(cfg.dataset, cfg.batch_size, cfg.seed, None, cfg.train_fraction, cfg.subset_seed, cfg.augment, cfg.image_size, 0,
                        crop_padding=cfg.crop_padding, flip=cfg.flip, extra_views=r.recipe.data_views(dataset_info(cfg.dataset), True, cfg.augment, cfg.image_size),
                        extras=(lambda split: r.recipe.extras(split, cfg.seed)) if r.recipe.extras else None, batched=True)
    module, teacher, _ = build_module(r, data)   # on the CPU, as the trainer builds them before accelerate moves them
    module.train()
    batch = next(iter(data.train))
    views = data.train_views or {}
    # the views' random choices, drawn as the trainer draws them on the device (a CUDA generator needs a real GPU)
    choices = {name: v.draw(len(batch["label"]), epoch_generator(cfg.seed, 0)) for name, v in views.items()}
    syncs = HostSyncs()
    mode = FakeTensorMode(allow_non_fake_inputs=False)
    torch.__future__.set_swap_module_params_on_conversion(False)   # fake tensors cannot be swapped into parameters
    _stats.cache_clear()   # the views' constants are cached per device: fake ones must not outlive this mode
    try:
        return _fake_step(mode, syncs, module, teacher, batch, views, choices, precision)
    finally:
        _stats.cache_clear()


def _fake_step(mode, syncs, module, teacher, batch, views, choices, precision) -> list:
    with mode:
        on_fake_cuda(mode, module); on_fake_cuda(mode, teacher)
        fake = lambda x: mode.from_tensor(x).to("cuda") if isinstance(x, torch.Tensor) else x
        batch, choices = tree_map(fake, batch), tree_map(fake, choices)
        with syncs:
            if views:
                pixels = batch.pop("pixels")
                batch.update({name: v.apply(pixels, choices[name] or None) for name, v in views.items()})
            images = batch["image"].flatten(0, 1) if batch["image"].dim() == 5 else batch["image"]
            # autocast on CUDA refuses to start without a GPU: told there is one, it casts the fake tensors as on a GPU
            with mock.patch("torch.cuda.is_available", return_value=True), mock.patch("torch.cuda.is_bf16_supported", return_value=True):
                autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")
            t = None
            if teacher is not None:
                with torch.no_grad(), autocast:
                    t_in = batch.get("teacher_image", images)
                    t = teacher(t_in.flatten(0, 1) if t_in.dim() == 5 else t_in)
            with autocast:
                terms, logits = module(images, batch, t)
            if precision == "bf16" and logits is not None: assert logits.dtype == torch.bfloat16   # autocast did cast
            assert terms and all(v.device.type == "cuda" for v in terms.values()), {k: v.device for k, v in terms.items()}
            loss = sum(terms.values())
            assert loss.device.type == "cuda"
    return syncs.found


# the host syncs that stay in a step, by method, and why (none today)
ALLOWED_SYNCS: dict = {}


@pytest.mark.parametrize("precision", ["no", "bf16"])
@pytest.mark.parametrize("key", sorted(RUNS))
def test_every_method_steps_on_fake_cuda_without_a_device_mix_or_a_host_sync(key, precision):
    found = step_on_fake_cuda(key, precision)
    assert set(found) <= set(ALLOWED_SYNCS.get(key, ())), f"{key}: host syncs in the step: {found}"


def test_the_harness_catches_a_cpu_tensor_and_a_host_read_in_a_step():
    # the guard itself: a CPU constant meeting a CUDA tensor raises; a read of a value is recorded, with its line
    mode, syncs = FakeTensorMode(allow_non_fake_inputs=False), HostSyncs()
    with mode:
        x = mode.from_tensor(torch.ones(4)).to("cuda")
        with pytest.raises(Exception, match="[Dd]evice"):
            x + mode.from_tensor(torch.ones(4))
        with syncs:
            float(x.sum())
            x.cpu()
    assert [kind for kind, _ in syncs.found] == ["read", "copy to cpu"]


def test_the_registry_is_covered():
    assert {n for n in METHODS.names() if METHODS.get(n).distiller is not None and METHODS.get(n).distiller.__module__.startswith("kdbook.")} \
        <= {RUNS[k].get("method", k) for k in RUNS}
