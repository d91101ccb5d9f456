"""The hybrid: condition on the support *and* fine-tune on it.

The amortized set-conditioned model (Neural Statistician, Edwards & Storkey 2017) adapts by
encoding the support into a context; here MAML (Finn et al. 2017) additionally meta-learns its
parameters so that a few gradient steps on the support loss, *given that context*, improve it
further. The context is recomputed from the current parameters at every inner step, so the
adapted generator is ``p_phi(x | support)``. With 0 inner steps it is the amortized model.
"""

from __future__ import annotations

from .maml import MAML


class Hybrid(MAML):
    """MAML (second or first order, Meta-SGD optional) on the support-conditioned model."""

    name = "hybrid"
    conditional = True
