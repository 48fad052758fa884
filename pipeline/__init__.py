"""hasat: reproducible fine-tuning of language models on Turkish domain data (see ARCHITECTURE.md)."""
