"""The resource plan docs/scale.md tabulates: per model and method, memory per device for one SFT and one DPO
step on one H100, on 8 H100s under ZeRO-3/FSDP, and on a CPU (src/medtune/resources.py states the accounting).

    python scripts/scale_table.py > table.md
"""

from __future__ import annotations

from medtune.resources import GB, KNOWN, Setting, fits, memory

# (column, layout, devices, device memory in GB, bytes per weight, gradient checkpointing)
HARDWARE = [("1x H100 80 GB", "single", 1, 80, 2, True), ("8x H100, ZeRO-3/FSDP", "zero3", 8, 80, 2, True),
            ("CPU, 24 GB RAM", "single", 1, 24, 4, False)]
# DPO: 2 pairs per device; medtune's default precomputes the reference log-probs for full fine-tuning
STAGES = {"SFT": dict(sequences=4, dpo=False), "DPO": dict(sequences=4, dpo=True, precomputed_reference=True)}


def cell(model: str, method: str, stage: dict, hardware: tuple) -> str:
    _, layout, devices, device_gb, weight_bytes, checkpointing = hardware
    if method == "qlora" and weight_bytes == 4:
        return "– (CUDA only)"
    parts = memory(KNOWN[model], Setting(method=method, layout=layout, devices=devices, tokens=1024,
                                          weight_bytes=weight_bytes, checkpointing=checkpointing, **stage))
    return f"{parts['total'] / GB:.1f} GB" + ("" if fits(parts, device_gb) else " (does not fit)")


def main() -> None:
    print("| model | parameters | method | stage | " + " | ".join(h[0] for h in HARDWARE) + " |")
    print("|---|---|---|---|" + "---|" * len(HARDWARE))
    for model, shape in KNOWN.items():
        for method in ("lora", "qlora", "full"):
            for name, stage in STAGES.items():
                print(f"| {model} | {shape.parameters() / 1e9:.2f} B | {method} | {name} | "
                      + " | ".join(cell(model, method, stage, h) for h in HARDWARE) + " |")


if __name__ == "__main__":
    main()
