"""Training: start-up checks, the run dir, olmo-core's trainer and olmotrain's callbacks."""
