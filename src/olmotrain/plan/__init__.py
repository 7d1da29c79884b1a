"""The plan: the Chinchilla resolvers fill ``derived.*``, and :func:`~olmotrain.plan.plan.build_plan`
turns the resolved run config into everything a run will do, before any expensive work."""
