"""Shipping the model: loading an exported or registered model (`models`), the promotion rule
(`promotion`) and the OpenAI-compatible server (`engine` batches, `server` speaks HTTP)."""
