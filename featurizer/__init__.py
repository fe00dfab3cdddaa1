"""Per-video work: decoding, the frozen video LLM, hidden states, token merging, storage."""
