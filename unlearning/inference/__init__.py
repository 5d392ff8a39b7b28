"""Teacher-forced scoring, shared prefixes, slot decoding, and answers generated and scored over the processes."""
