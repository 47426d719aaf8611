"""The science, config-free: arrays in, arrays out.

`rows` (the primitives of every RDM metric), `rdm` (whole RDMs of response
patterns), `compare` (RDM comparison measures), `summary` (extreme pairs,
histogram and moments of an RDM), `inference` (bootstrap intervals,
permutation tests; its weighted pair statistics in `_weighted`), `group`
(noise ceilings and consistency over subjects), `evaluation` (model RDMs
against subjects' RDMs, bootstrap over images, subjects or both),
`crossval` (crossnobis and noise precisions of run-wise patterns),
`encoding` (ridge and
veRSA), `reweighted` (feature-reweighted RSA), `repeats` (repeat-count
bias), `mds`, `interop` (rsatoolbox, RDM files) and `analysis` (one ROI x
metric, as the rdm stage reports it). Needs jax, numpy and scipy.
"""
