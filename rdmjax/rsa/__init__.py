"""The science, config-free: arrays in, arrays out.

`rdm` (RDMs of response patterns), `compare` (RDM comparison measures),
`summary` (extreme pairs, histogram and moments of an RDM), `inference`
(bootstrap intervals, permutation tests), `group` (noise ceilings and
consistency over subjects), `encoding` (ridge and reweighted RSA), `repeats`
(repeat-count bias), `mds`, `interop` (rsatoolbox, RDM files) and `analysis`
(one ROI x metric, as the rdm stage reports it). Needs jax, numpy and scipy.
"""
