"""P networks as stacked tensors, and the per-member optimisers that update them.

Weights are stacked as [P, in, out] (each member's nn.Linear weight transposed) and biases as
[P, out]; a layer is one batched matmul. The optimisers are torch's Adam and SGD (with momentum),
applied per member under a mask: a member outside the mask keeps its parameters, every slot and its
step count exactly (`torch.where` or leaving it out, never a zeroed gradient or a multiplied mask,
which would still move Adam's moments and count).

masked_adam has two implementations of the same update. `per_member` passes each stepping
member's slices to torch's fused Adam kernel (cheap launches, reading the mask is free: the CPU
path); `where` computes every member and selects (no host read: the GPU path, whose read of the
mask would stall the launch queue). `auto` picks by device; either can be chosen anywhere, so the
GPU's branch runs, and is tested, on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim.adam import adam as adam_step

ADAM_IMPLS = ("auto", "per_member", "where")


class StackedMLP:
    """P independent MLPs as stacked weights [P, in, out] and biases [P, out]."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
        self.weights, self.biases = weights, biases

    @property
    def params(self) -> list[torch.Tensor]:
        """[w0, b0, w1, b1, ...]: the order of the nn.Module's parameters."""
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.biases[i].unsqueeze(1), x, self.weights[i])


def stack_linear(layers: list[list[torch.nn.Linear]], device, dtype) -> StackedMLP:
    """layers[member][k] -> stacked weights of layer k ([P, in, out], as leaf tensors with grad)."""
    ws, bs = [], []
    for k in range(len(layers[0])):
        w = torch.stack([m[k].weight.detach().T for m in layers]).to(device=device, dtype=dtype).contiguous()
        b = torch.stack([m[k].bias.detach() for m in layers]).to(device=device, dtype=dtype).contiguous()
        ws.append(w.requires_grad_())
        bs.append(b.requires_grad_())
    return StackedMLP(ws, bs)


def to_module_layout(t: torch.Tensor) -> torch.Tensor:
    """A member's slice of a stacked parameter in nn.Module layout (weights transposed back)."""
    return t.T.contiguous() if t.dim() == 2 else t.clone()


def from_module_layout(t: torch.Tensor) -> torch.Tensor:
    return t.T if t.dim() == 2 else t


@torch.no_grad()
def copy_checked(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
    """Copy src into dst; shapes must be equal (copy_ would broadcast a wrong shape silently)."""
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"{what} has shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
    dst.copy_(src.to(dst))


def per_member(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [P] tensor shaped to broadcast against a stacked [P, ...] tensor."""
    return x.view((-1,) + (1,) * (like.dim() - 1))


@dataclass
class OptimState:
    """Per-member optimiser slots for a list of stacked parameters: Adam's moments, or SGD's momentum."""

    m: list[torch.Tensor]
    """Adam's first moments, or SGD's momentum buffers."""
    v: list[torch.Tensor]
    """Adam's second moments (unused by SGD)."""
    step: torch.Tensor
    """[P] float64: updates each member has taken."""

    @classmethod
    def zeros(cls, params: list[torch.Tensor]) -> OptimState:
        p0 = params[0]
        return cls([torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params],
                   torch.zeros(p0.shape[0], dtype=torch.float64, device=p0.device))


@torch.no_grad()
def masked_adam(params: list[torch.Tensor], grads: list[torch.Tensor], state: OptimState, mask: torch.Tensor,
                lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor, eps: torch.Tensor,
                impl: str = "auto") -> None:
    """torch.optim.Adam's update, applied only to members in `mask`."""
    if impl == "auto":
        impl = "per_member" if params[0].device.type == "cpu" else "where"
    if impl == "per_member":
        hyper = torch.stack([lr.double(), beta1.double(), beta2.double(), eps.double(), state.step]).tolist()
        for i in mask.nonzero().flatten().tolist():
            lr_i, b1_i, b2_i, eps_i, step_i = (h[i] for h in hyper)
            steps = [torch.tensor(step_i, dtype=torch.float32) for _ in params]
            # .contiguous(): torch's fused CPU kernel walks the gradient in the parameter's layout, so a
            # gradient with other strides (R1's double backward gives a transposed one) would be misread.
            adam_step([p[i] for p in params], [g[i].contiguous() for g in grads], [m[i] for m in state.m],
                      [v[i] for v in state.v], [], steps, fused=params[0].device.type == "cpu", amsgrad=False,
                      beta1=b1_i, beta2=b2_i, lr=lr_i, weight_decay=0.0, eps=eps_i, maximize=False)
        state.step.add_(mask.double())
        return
    if impl != "where":
        raise ValueError(f"unknown Adam implementation {impl!r} (known: {', '.join(ADAM_IMPLS)})")
    step = state.step + mask.double()
    bc1 = 1 - beta1.double() ** step
    bc2_sqrt = (1 - beta2.double() ** step).sqrt()
    dt = params[0].dtype
    step_size, bc2_sqrt = (lr.double() / bc1).to(dt), bc2_sqrt.to(dt)
    beta1, beta2, eps = beta1.to(dt), beta2.to(dt), eps.to(dt)
    for p, g, m, v in zip(params, grads, state.m, state.v):
        sel = per_member(mask, p)
        m_new = torch.lerp(m, g, per_member(1 - beta1, p))
        v_new = torch.addcmul(v * per_member(beta2, p), g, g * per_member(1 - beta2, p))
        denom = v_new.sqrt() / per_member(bc2_sqrt, p) + per_member(eps, p)
        p.copy_(torch.where(sel, p - per_member(step_size, p) * (m_new / denom), p))
        m.copy_(torch.where(sel, m_new, m))
        v.copy_(torch.where(sel, v_new, v))
    state.step.copy_(step)


@torch.no_grad()
def masked_sgd(params: list[torch.Tensor], grads: list[torch.Tensor], state: OptimState, mask: torch.Tensor,
               lr: torch.Tensor, momentum: torch.Tensor) -> None:
    """torch.optim.SGD's update (momentum, no dampening, no Nesterov), applied only to members in `mask`.

    As in torch, the first step of a member with momentum takes the gradient itself as its buffer."""
    dt = params[0].dtype
    first = state.step == 0
    mom, lr_ = momentum.to(dt), lr.to(dt)
    for p, g, buf in zip(params, grads, state.m):
        sel = per_member(mask, p)
        new_buf = torch.where(per_member(first, p), g, buf * per_member(mom, p) + g)
        use_buf = per_member(momentum != 0, p)
        direction = torch.where(use_buf, new_buf, g)
        p.copy_(torch.where(sel, p - per_member(lr_, p) * direction, p))
        buf.copy_(torch.where(sel & use_buf, new_buf, buf))
    state.step.add_(mask.double())


def member_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """[P] global L2 norm of each member's gradient (over all its parameters)."""
    return torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)


def clip_(grads: list[torch.Tensor], norms: torch.Tensor, max_norm: torch.Tensor, clip_on: torch.Tensor) -> None:
    """clip_grad_norm_'s rule per member: scale by min(1, max / (norm + 1e-6)) where clipping is on."""
    coef = torch.where(clip_on, (max_norm / (norms + 1e-6)).clamp(max=1.0), torch.ones_like(norms))
    for g in grads:
        g.mul_(per_member(coef, g))
