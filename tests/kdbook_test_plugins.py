"""Methods that exist only for tests, registered through KDBOOK_PLUGINS.

`toy_relational` couples the samples of a batch (pairwise cosine similarities of same-class pairs),
so it is wrong unless it sees the global batch; `nan_after` turns NaN after a number of steps.
"""
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdbook.distill import Distiller, register_method


@register_method("toy_relational", gamma=1.0, alpha=0.0, beta=1.0, source="tests")
class ToyRelational(Distiller):
    "Squared difference of same-class cosine-similarity graphs (test only)."
    relational, needs = True, ("pooled",)

    def forward(self, s, t, batch):
        same = (batch["label"][:, None] == batch["label"][None, :]).float()
        gs, gt = F.normalize(s.pooled, dim=1), F.normalize(t.pooled, dim=1)
        return {"graph": ((gs @ gs.T - gt @ gt.T) * same).pow(2).sum() / same.sum()}


@dataclass
class NanParams:
    steps: int = 25   # the forward call from which the loss is NaN


@register_method("nan_after", params=NanParams, gamma=1.0, alpha=0.0, beta=1.0, needs_teacher=False, source="tests")
class NanAfter(Distiller):
    "A loss that becomes NaN after `steps` forward calls (test only)."
    needs = ("logits",)

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def forward(self, s, t, batch):
        self.calls += 1
        value = s.logits.pow(2).mean() * 0
        return {"value": value + (float("nan") if self.calls >= self.hp.steps else 0.0)}


@register_method("forgets_params", gamma=1.0, alpha=0.0, beta=1.0, needs_teacher=False, source="tests")
class ForgetsParams(Distiller):
    "A trainable head that its method leaves out of the optimizer (test only: the trainer must refuse to start)."
    needs = ("pooled",)

    def __init__(self, student, teacher, setup, hp=None):
        super().__init__(student, teacher, setup, hp)
        self.head = torch.nn.Linear(student.pooled[0], 4)

    def param_groups(self): return []

    def forward(self, s, t, batch): return {"head": self.head(s.pooled).pow(2).mean()}


@register_method("rank_dies", gamma=1.0, alpha=0.0, beta=1.0, needs_teacher=False, source="tests")
class RankDies(Distiller):
    "Rank 1 of a multi-process run exits in its first step without a word, as a killed process does (test only)."
    needs = ("logits",)

    def forward(self, s, t, batch):
        if int(os.environ.get("RANK", "0")) == 1: os._exit(3)
        return {"zero": s.logits.sum() * 0}


@register_method("rank_aborts_at_teardown", gamma=1.0, alpha=0.0, beta=1.0, needs_teacher=False, source="tests")
class RankAbortsAtTeardown(Distiller):
    "Rank 1 of a multi-process run trains, then aborts while its process group is torn down, as gloo once did in CI (test only)."
    needs = ("logits",)

    def forward(self, s, t, batch):
        if int(os.environ.get("RANK", "0")) == 1:
            import torch.distributed as dist
            dist.destroy_process_group = lambda *a, **k: os.abort()
        return {"zero": s.logits.sum() * 0}


@register_method("dropout_penalty", gamma=1.0, alpha=0.0, beta=0.1, needs_teacher=False, source="tests")
class DropoutPenalty(Distiller):
    "A penalty on dropped-out pooled features: a training step that draws from the global RNG, as dropout in a student does."
    needs = ("pooled",)

    def forward(self, s, t, batch):
        return {"penalty": F.dropout(s.pooled, 0.5, training=True).pow(2).mean()}


@register_method("rank_dies_early", gamma=1.0, alpha=0.0, beta=1.0, needs_teacher=False, source="tests")
class RankDiesEarly(Distiller):
    "Rank 1 dies while rank 0 is still setting up, before any record exists: the launching process must record it (test only)."
    needs = ("logits",)

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        import time
        if int(os.environ.get("RANK", "0")) == 1: os._exit(3)
        if int(os.environ.get("RANK", "0")) == 0: time.sleep(60)   # still starting when the launcher stops it

    def forward(self, s, t, batch): return {"zero": s.logits.sum() * 0}
