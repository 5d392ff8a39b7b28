"""General-capability evaluations shared by the benchmarks (MME, POPE): a model's utility beyond the facts."""
