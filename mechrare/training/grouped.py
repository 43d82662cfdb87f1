"""Small models together: the (model, seed) pairs of one shape (or one shape family) trained as one program.

``train.together = true``: the weights of K models of one shape (the seeds of a size, and its
interventions) are stacked (``torch.func.stack_module_state``); with ``train.together_sizes`` the sizes
of one family (one head width) too, each padded with zeros to the largest (:mod:`mechrare.training.padding`,
exact but each member pays the largest's arithmetic). Then one ``torch.func.vmap`` of the
model's own forward computes the K losses, each on its own batch (a seed has its own data order, an
intervention its own mixture); one backward, clipping each model by its own gradient norm (as
``clip_grad_norm_`` does), and one AdamW over the stacked tensors (elementwise, so the same update
as K optimizers). The vmap stops at the final normed states: each model's head and loss are made a
chunk of positions at a time (:mod:`mechrare.training.chunked_loss`, ``train.loss_chunk``), so the K
models' logits never exist at once. Everything else stays with K ordinary :class:`~mechrare.training.trainer.Trainer`
objects, the *members*: before a checkpoint or a resume-state write their weights and optimizer state
are copied from the stack, and their own callbacks write the usual folders, so every model's series is
the one it would have alone, within float tolerance (batched kernels round differently).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mechrare.errors import ConfigError
from mechrare.training.chunked_loss import causal_lm_loss
from mechrare.training.padding import WIDTH, corner, head_width, norm_widths, padded_template, stack_padded
from mechrare.training.trainer import Trainer

HEAD, BODY = "lm_head.weight", "model."  # Olmo2ForCausalLM: the head, and the decoder's names


@dataclass(frozen=True)
class StackedBatch:
    input_ids: Any  # [K, B, L]
    labels: Any


class _Stacked:
    """The members' batches of one step, stacked (what the prefetcher builds ahead)."""

    def __init__(self, mixtures):
        self.mixtures = mixtures

    def batch(self, step: int, batch_size: int) -> StackedBatch:
        import numpy as np

        parts = [m.batch(step, batch_size) for m in self.mixtures]
        return StackedBatch(np.stack([p.input_ids for p in parts]), np.stack([p.labels for p in parts]))


class GroupTrainer:
    """Trains ``members`` (Trainers of one model shape, at one step) as one program; ``sync_every``:
    the resume-state period, at whose steps the members are brought up to date before their callbacks."""

    def __init__(self, members: list[Trainer], sync_every: int):
        import torch
        from torch.func import stack_module_state

        from mechrare.training.optim import adamw, param_groups

        if not members:
            raise ValueError("a group needs at least one member")
        first = members[0]
        configs = [m.model.config for m in members]
        shapes = [{n: p.shape for n, p in m.model.named_parameters()} for m in members]
        if len({head_width(c) for c in configs}) != 1 or len({m.step for m in members}) != 1:
            raise ConfigError("train.together: the models of a group must have one head width (d_model / n_heads) "
                              "and be at one step")
        self.members = members
        self.cfg, self.device, self.autocast_dtype = first.cfg, first.device, first.autocast_dtype
        self.schedule, self.sync_every, self.step = first.schedule, sync_every, first.step
        if all(s == shapes[0] for s in shapes):
            params, self.buffers = stack_module_state([m.model for m in members])
            self._base = copy.deepcopy(first.model).to("meta")
        else:  # sizes of one family: each padded with zeros to the largest (mechrare.training.padding)
            self._base = padded_template(configs)
            params = stack_padded([dict(m.model.named_parameters()) for m in members], dict(self._base.named_parameters()))
            buffers = {n: b for n, b in self._base.named_buffers() if not n.endswith("." + WIDTH)}
            self.buffers = (stack_padded([dict(m.model.named_buffers()) for m in members], buffers)
                            | norm_widths(self._base, [m.model for m in members], first.device))
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        name_of = {id(p): n for n, p in self._base.named_parameters()}
        template_groups = param_groups(self._base, self.cfg.weight_decay)
        self._names = [[name_of[id(p)] for p in g["params"]] for g in template_groups]
        groups = [{"params": [self.params[n] for n in names], "weight_decay": g["weight_decay"]}
                  for names, g in zip(self._names, template_groups)]
        self.optimizer, self.scheduler = adamw(groups, self.cfg, self.device.type)
        if self.step:
            self._load_members_state()

        if set(self.params) != {HEAD} | {n for n in self.params if n.startswith(BODY)}:
            raise ValueError(f"train.together needs a decoder under {BODY!r} and a head {HEAD!r}; got {sorted(self.params)}")
        body = lambda d: {n[len(BODY):]: v for n, v in d.items() if n.startswith(BODY)}  # noqa: E731
        self._body_params, self._body_buffers = body(self.params), body(self.buffers)

        def states(p, b, ids):
            from torch.func import functional_call

            return functional_call(self._base.model, (p, b), (ids,)).last_hidden_state

        self._states = torch.func.vmap(states)  # [K, B, L, d]: the K decoders' final normed states
        if self.cfg.compile:  # one compiled program for the K decoders (backward through it)
            if self.device.type == "cuda":
                raise ConfigError("train.together with train.compile on CUDA: the compiled vmap of the SDPA forward failed "
                                  "on an H200 (torch 2.11; benchmarks/RESULTS.md); set train.compile = false, or train.together = false")
            self._states = torch.compile(self._states)

    @property
    def tokens_per_step(self) -> int:
        return self.members[0].tokens_per_step * len(self.members)

    # -- one update of every member -------------------------------------------------------
    def train_step(self, step: int, prefetched=None):
        import torch

        if prefetched is None:
            batch = _Stacked([m.mixture for m in self.members]).batch(step, self.cfg.batch_size)
            prefetched = torch.as_tensor(batch.input_ids), torch.as_tensor(batch.labels)
        ids = prefetched[0].to(self.device, non_blocking=True)
        labels = prefetched[1].to(self.device, non_blocking=True)
        enabled = self.autocast_dtype is not None
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=enabled):
            states = self._states(self._body_params, self._body_buffers, ids)
            head = self.params[HEAD]
            losses = torch.stack([causal_lm_loss(states[k], head[k], labels[k], self.cfg.loss_chunk)
                                  for k in range(len(self.members))])
        losses.sum().backward()
        if self.cfg.grad_clip > 0:
            self._clip(self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses.detach().float()

    def _clip(self, max_norm: float) -> None:
        """``clip_grad_norm_`` of each member on its own slice: the norm of the per-tensor norms."""
        import torch

        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), 2, dim=1) for g in grads])  # [tensors, K]
        total = torch.linalg.vector_norm(norms, 2, dim=0)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))

    def fit(self, until: int | None = None) -> None:
        """Train every member to ``cfg.steps`` (or stop after update ``until``), with their callbacks."""
        from mechrare.training.loop import fit

        fit(self, self.members, _Stacked([m.mixture for m in self.members]), until)

    def between_checkpoints(self) -> None:
        """At a resume-state step (and the last), the members brought up to date before their callbacks write it."""
        if self.step % self.sync_every == 0 or self.step == self.cfg.steps:
            self.sync()

    def checkpoint(self) -> None:
        self.sync()
        for m in self.members:
            m.checkpoint()

    # -- members <-> stack -----------------------------------------------------------------
    def _member_params(self, m: Trainer) -> Iterable:
        """(name, member parameter) in the optimizer's order (a member smaller than the group's largest lacks some)."""
        params = dict(m.model.named_parameters())
        return [(n, params[n]) for names in self._names for n in names if n in params]

    def sync(self) -> None:
        """Copy the stacked weights, AdamW state and schedule position into every member (their own tensors)."""
        import torch

        schedule = self.scheduler.state_dict()
        with torch.no_grad():
            for k, m in enumerate(self.members):
                m.scheduler.load_state_dict(schedule)
                for own, group in zip(m.optimizer.param_groups, self.optimizer.param_groups):
                    own["lr"] = group["lr"]
                for name, p in self._member_params(m):
                    stacked = self.params[name]
                    own = corner(p.shape)  # the whole slice, or its leading corner (mechrare.training.padding)
                    p.copy_(stacked[k][own])
                    state = self.optimizer.state.get(stacked)
                    if state:
                        m.optimizer.state[p] = {key: (v.clone() if key == "step" else v[k][own].clone())
                                                for key, v in state.items()}

    def _load_members_state(self) -> None:
        """The members' optimizer state (loaded from their resume states) stacked into the group's."""
        first = self.members[0]
        members = [dict(self._member_params(m)) for m in self.members]
        for name, stacked in self.params.items():
            states = [m.optimizer.state.get(ps[name]) for m, ps in zip(self.members, members) if name in ps]
            if not all(states):
                continue
            state = {}
            for key, v in states[0].items():
                if key == "step":
                    state[key] = v.clone()
                    continue
                own = [{name: m.optimizer.state[ps[name]][key]} if name in ps else {} for m, ps in zip(self.members, members)]
                state[key] = stack_padded(own, {name: stacked[0]})[name]  # zero where a member is padded
            self.optimizer.state[stacked] = state
        for group, own in zip(self.optimizer.param_groups, first.optimizer.param_groups):
            group["lr"], group["initial_lr"] = own["lr"], own.get("initial_lr", own["lr"])
        self.scheduler.load_state_dict(first.scheduler.state_dict())
