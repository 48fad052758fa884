"""Text classification: `train` (examples, model with a classification head) and `report`
(evaluate against baselines, model card)."""
