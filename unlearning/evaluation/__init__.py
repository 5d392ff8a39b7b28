"""The evaluation runner, general evaluations, metrics and the LLM judge."""
