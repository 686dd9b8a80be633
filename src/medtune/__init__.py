"""medtune: is SFT enough for my clinical task, or does DPO pay off?"""

__version__ = "0.1.0"
