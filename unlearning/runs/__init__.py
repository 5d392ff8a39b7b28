"""Run folders: identity, attempts, checkpoints, provenance, content fingerprints, atomic io, CPU numerics."""
