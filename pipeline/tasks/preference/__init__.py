"""Preference tuning (DPO, ORPO, KTO with TRL)."""
