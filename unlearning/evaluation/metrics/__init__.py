"""Metrics shared by the benchmarks: likelihoods, text overlap, statistics, and the LLM judge."""
