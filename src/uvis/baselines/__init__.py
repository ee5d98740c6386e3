"""Reference predictions that need no model: used to exercise evaluation end to end."""

from uvis.baselines.noisy_gt import NoiseParams, noisy_davis_predictions, noisy_ytvis_results

__all__ = ["NoiseParams", "noisy_davis_predictions", "noisy_ytvis_results"]
