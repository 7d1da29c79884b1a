"""Where runs execute: local ranks, resumable sweeps, SLURM jobs through submitit, and status."""
