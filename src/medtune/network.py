"""Nothing leaves the machine unless the user names a model on the hub.

The Hugging Face libraries reach huggingface.co on their own: TRL's trainers send a usage ping, and
PEFT imports bitsandbytes where it is installed, whose CPU backend asks the hub for a kernel on a CPU
with AVX512-BF16. Their offline switches stop all of it, and they are read when huggingface_hub is
imported, so the ``medtune`` command sets them first, once, from the model the user named.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from .embedded import EMBEDDED_NAMES

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1"}


def is_hub_id(name: str) -> bool:
    """Whether the ``model`` setting names a hub repository ("name" or "owner/name"), not the embedded
    model or a local folder. A path-like name that does not exist is a missing folder, not a hub id."""
    if name in EMBEDDED_NAMES or Path(name).expanduser().exists():
        return False
    return not (name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name)


def offline_unless_hub(model: str | None) -> bool:
    """Set the hub libraries' offline switches unless ``model`` is a hub id; a switch the user set is kept.
    Returns whether medtune runs offline."""
    if model is not None and is_hub_id(model):
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        return False
    for name, value in OFFLINE.items():
        os.environ.setdefault(name, value)
    return True


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
