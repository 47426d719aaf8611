"""Training pair models: pairs born on the device (`pairs`), losses and
scores (`losses`, `metrics`), the arrays a run trains on (`data`), the
jitted loop (`loop`), held-out evaluation (`evaluation`), Orbax checkpoints
(`checkpoints`), the baselines beside a model (`baselines`) and the metrics
files (`metric_writer`)."""
