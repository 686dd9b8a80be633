"""Training stages, thin layers over TRL: sft.py, pairs.py (preference pairs), dpo.py."""
