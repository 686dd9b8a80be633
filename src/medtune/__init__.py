"""medtune: is SFT enough for my clinical task, or does DPO pay off?"""

import os
import sys

# No telemetry. TRL's trainers send a usage ping to huggingface.co each time one is created, unless
# HF_HUB_DISABLE_TELEMETRY (or offline mode) is set or CI is. huggingface_hub reads the variable when
# it is imported, so a caller that imported it before medtune also gets the module's flag set. Child
# processes (the benchmarks' plain TRL script) inherit the variable.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
if "huggingface_hub.constants" in sys.modules:
    sys.modules["huggingface_hub.constants"].HF_HUB_DISABLE_TELEMETRY = True

__version__ = "0.1.0"
