"""Stage 5 of the pipeline — interventions: hook functions that edit chosen MLP neurons."""

from crane_lens.intervention.hooks import (
    MODES,
    Intervention,
    ablate,
    ablation_hooks,
    intervention,
    intervention_values,
    keep_fill_hook,
    replace_hook,
    scale_hook,
    stacked_hooks,
    zero_hook,
)

__all__ = [
    "MODES",
    "Intervention",
    "ablate",
    "ablation_hooks",
    "intervention",
    "intervention_values",
    "keep_fill_hook",
    "replace_hook",
    "scale_hook",
    "stacked_hooks",
    "zero_hook",
]
