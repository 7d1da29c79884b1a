"""olmotrain: Hydra-composed OLMo pretraining ablations on top of olmo-core."""

__version__ = "0.1.0"
