"""Feature-statistics mixing between training images (MixStyle; Zhou et al., ICLR 2021), training only.

A camera's look (lighting, white balance, background brightness) lives largely in the early feature
maps' per-channel mean and standard deviation. Mixing those statistics between images of a batch
makes the network see each person under other images' "styles" while keeping the content, so it
relies less on the look of the training cameras: the domain-generalization lever for a model
trained on one dataset's two cameras and deployed on cameras it never saw.

It is attached with forward hooks (:func:`attach_mixstyle`) by the training loop: the model file
and everything exported stay untouched, and the hooks do nothing in eval mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = ["MixStyle", "attach_mixstyle"]


@dataclasses.dataclass
class MixStyle:
    """Mix each image's per-channel feature mean/std with another image's, with probability ``p`` per batch.

    Attributes:
        p: probability that a training batch is mixed.
        alpha: the mixing weight ``lam ~ Beta(alpha, alpha)`` per image (small alpha: mostly near 0 or 1).
        eps: added to the variance before the square root.
    """

    p: float = 0.5
    alpha: float = 0.1
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"mixstyle probability must be in [0, 1], got {self.p}")
        if not self.alpha > 0:
            raise ValueError(f"mixstyle alpha must be > 0, got {self.alpha}")

    def __call__(self, x):
        import torch

        if self.p == 0 or x.shape[0] < 2 or torch.rand(()).item() >= self.p:
            return x
        b = x.shape[0]
        dtype = x.dtype
        xf = x.float()
        mu = xf.mean(dim=(2, 3), keepdim=True)
        sig = (xf.var(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        mu_d, sig_d = mu.detach(), sig.detach()  # the statistics are mixed, not learned through
        normed = (xf - mu_d) / sig_d
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b, 1, 1, 1)).to(x.device)
        perm = torch.randperm(b, device=x.device)
        mu_mix = lam * mu_d + (1 - lam) * mu_d[perm]
        sig_mix = lam * sig_d + (1 - lam) * sig_d[perm]
        return (normed * sig_mix + mu_mix).to(dtype)


def attach_mixstyle(model, mix: MixStyle, layers: Sequence[str] = ("stage1", "stage2")) -> list:
    """Apply ``mix`` to the outputs of ``model``'s child modules named ``layers`` in training mode.

    Returns the hook handles (``handle.remove()`` detaches). Raises ``ValueError`` for an unknown layer.
    """
    children = dict(model.named_children())
    unknown = [name for name in layers if name not in children]
    if unknown:
        raise ValueError(f"mixstyle layers {unknown} are not modules of {type(model).__name__} "
                         f"(it has {', '.join(children)})")

    def hook(module, inputs, output):
        return mix(output) if module.training else output

    return [children[name].register_forward_hook(hook) for name in layers]
