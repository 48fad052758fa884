"""Task kinds: what differs between instruction tuning (`sft/`) and classification
(`classification/`), one subpackage each with a `train` side (examples, model, batches) and a
`report` side (evaluate, model card, export check). Stages ask `training.training_for(kind)` or
`reporting.report_for(kind)` and call its methods; nothing else branches on `task.kind`.

A new kind: a subpackage with both sides, registered in `training.py` and `reporting.py`."""
