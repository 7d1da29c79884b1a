"""Model building: olmo-core ``TransformerConfig`` (sizes, GQA, OpenELM layer-wise scaling) and
the device, attention-backend, sharding and micro-batch choices that run it."""
