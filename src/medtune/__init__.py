"""medtune: is SFT enough for my clinical task, or does DPO pay off?

Importing medtune changes no environment variable, allocator or garbage-collector setting; the ``medtune``
command runs the Hugging Face libraries offline unless told to use the hub (network.py)."""

__version__ = "0.1.0"
