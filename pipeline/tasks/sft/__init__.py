"""Instruction tuning (SFT): `train` (examples, model, batches) and `report` (evaluate, model card)."""
