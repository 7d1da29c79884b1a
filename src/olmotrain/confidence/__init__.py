"""How sure: resampling intervals for the numbers olmotrain reports."""
