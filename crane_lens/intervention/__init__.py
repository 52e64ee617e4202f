"""Stage 5 of the pipeline — interventions: hook functions that edit chosen MLP neurons
(masking them, or steering the model towards a language with them)."""

from crane_lens.intervention.hooks import (
    MODES,
    Intervention,
    ablate,
    ablation_hooks,
    intervene,
    intervention,
    intervention_values,
    keep_fill_hook,
    replace_hook,
    scale_hook,
    stacked_hooks,
    zero_hook,
)
from crane_lens.intervention.steering import STEER_MODES, steer, steering, steering_values

__all__ = [
    "MODES",
    "STEER_MODES",
    "Intervention",
    "ablate",
    "ablation_hooks",
    "intervene",
    "intervention",
    "intervention_values",
    "keep_fill_hook",
    "replace_hook",
    "scale_hook",
    "stacked_hooks",
    "steer",
    "steering",
    "steering_values",
    "zero_hook",
]
