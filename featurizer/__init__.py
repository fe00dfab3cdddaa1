"""Per-video work: decoding, the frozen video LLM, hidden-state capture, token merging, the store."""
