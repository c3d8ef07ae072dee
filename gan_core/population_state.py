"""A population member's state in the checkpoint layout shared with the reference trainer
(`gan_core.member_state`): read out of the stacked tensors, and written back into them. `pop` is a
`gan_core.population.PopulationTrainer` (not imported: that module imports this one)."""

from __future__ import annotations

import torch

from .member_state import MemberState, checked
from .stacked import OptimState, copy_checked, from_module_layout, to_module_layout


def _slots(pop, state: OptimState, p: int) -> dict[str, list]:
    """Member p's optimiser slots as torch's optimiser state_dict holds them (None where unset)."""
    n = len(state.m)
    step = float(state.step[p])
    if pop.sgd:
        keep = step > 0 and float(pop.momentum[p]) != 0
        return {"momentum_buffer": [to_module_layout(m[p]) if keep else None for m in state.m]}
    if step == 0:
        return {"step": [None] * n, "exp_avg": [None] * n, "exp_avg_sq": [None] * n}
    return {"step": [step] * n, "exp_avg": [to_module_layout(m[p]) for m in state.m],
            "exp_avg_sq": [to_module_layout(v[p]) for v in state.v]}


def member_state(pop, p: int) -> MemberState:
    """Member p's weights, optimiser slots, pending gradients, schedule and cure state, as a checkpoint
    holds them (the reference trainer's layout)."""
    state = {}
    for name, net, opt, grads in (("G", pop.G, pop.opt_g, pop.grad_g), ("D", pop.D, pop.opt_d, pop.grad_d)):
        state[name] = [to_module_layout(t.detach()[p]) for t in net.params]
        state[f"opt_{name}"] = _slots(pop, opt, p)
        state[f"grad_{name}"] = [to_module_layout(g[p]) for g in grads] if grads is not None else \
            [None] * len(net.params)
    state["rule"] = {"rest_k": float(pop.rest_k[p]), "batches": int(pop.batch_count[p]),
                     "tmp_prev": float(pop.tmp_prev[p])}
    state["sn"] = ({"u": [u[p].clone() for u in pop.sn_u], "v": [v[p].clone() for v in pop.sn_v]}
                   if pop.any_sn and bool(pop.sn_on[p]) else None)
    state["ema"] = ({"G": [to_module_layout(e[p]) for e in pop.ema_g], "updates": int(pop.ema_updates[p])}
                    if pop.any_ema and bool(pop.ema_on[p]) else None)
    return checked(state)


@torch.no_grad()
def load_member_state(pop, p: int, state: MemberState) -> None:
    """Member p set from a checkpoint's state (shapes and optimiser kind checked)."""
    checked(state)
    for name, net, opt, grads in (("G", pop.G, pop.opt_g, pop.grad_g), ("D", pop.D, pop.opt_d, pop.grad_d)):
        if len(state[name]) != len(net.params):
            raise ValueError(f"{name} has {len(state[name])} tensors, expected {len(net.params)}")
        for t, v in zip(net.params, state[name]):
            copy_checked(t[p], from_module_layout(v), name)
        slots = state[f"opt_{name}"]
        if pop.sgd:
            if "momentum_buffer" not in slots:
                raise ValueError("the checkpoint holds Adam's state, this member uses SGD")
            bufs = slots["momentum_buffer"]
            steps = 1.0 if any(b is not None for b in bufs) else 0.0
            for m, b in zip(opt.m, bufs):
                m[p] = 0.0 if b is None else from_module_layout(b).to(m)
            opt.step[p] = steps
        else:
            if "exp_avg" not in slots:
                raise ValueError("the checkpoint holds SGD's state, this member uses Adam")
            opt.step[p] = float(slots["step"][0] or 0.0)
            for m, v, a, b in zip(opt.m, opt.v, slots["exp_avg"], slots["exp_avg_sq"]):
                m[p] = 0.0 if a is None else from_module_layout(a).to(m)
                v[p] = 0.0 if b is None else from_module_layout(b).to(v)
        if grads is not None:
            for g, s in zip(grads, state[f"grad_{name}"]):
                g[p] = 0.0 if s is None else from_module_layout(s).to(g)
    pop.rest_k[p] = float(state["rule"].get("rest_k") or 0.0)
    pop.tmp_prev[p] = state["rule"]["tmp_prev"]
    pop.batch_count[p] = int(state["rule"].get("batches") or 0)
    if pop.any_sn and bool(pop.sn_on[p]):
        if not state.get("sn"):
            raise ValueError("the checkpoint has no spectral-norm vectors")
        for mine, theirs, key in ((pop.sn_u, state["sn"]["u"], "sn_u"), (pop.sn_v, state["sn"]["v"], "sn_v")):
            for t, v in zip(mine, theirs):
                copy_checked(t[p], v, key)
    if pop.any_ema and bool(pop.ema_on[p]):
        if not state.get("ema"):
            raise ValueError("the checkpoint has no average of G")
        for e, v in zip(pop.ema_g, state["ema"]["G"]):
            copy_checked(e[p], from_module_layout(v), "G_ema")
        pop.ema_updates[p] = float(state["ema"]["updates"])
