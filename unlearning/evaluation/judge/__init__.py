"""The LLM judge: its settings, an OpenAI-compatible client with a reply cache, and judgments stored and counted."""
