"""Ollama's Modelfile for an exported GGUF: the chat template, the task's system prompt, greedy decoding and the
end-of-turn stop token, so `ollama run` answers as the study's evaluation did."""

from __future__ import annotations

# ChatML (the embedded model's and the test models' template) in Ollama's Go template language
CHATML_TEMPLATE = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                   "<|im_start|>assistant\n")


def quoted(text: str) -> str:
    """A Modelfile triple-quoted value; the text itself may not close the quotes."""
    return '"""' + text.replace('"""', '"\\""') + '"""'


def modelfile(gguf_name: str, chat_template: str, system_prompt: str, stop_tokens: list[str]) -> str:
    lines = ["# written by medtune export: `ollama create NAME -f Modelfile` in this folder", f"FROM ./{gguf_name}"]
    if "<|im_start|>" in chat_template:
        lines.append(f"TEMPLATE {quoted(CHATML_TEMPLATE)}")
    else:  # Ollama reads the chat template stored in the GGUF and matches it to one it knows
        lines.append("# TEMPLATE: taken by Ollama from the chat template stored in the GGUF file")
    lines.append(f"SYSTEM {quoted(system_prompt)}")
    lines += [f'PARAMETER stop "{token}"' for token in stop_tokens]
    lines.append("PARAMETER temperature 0")  # greedy, as the study evaluated it
    return "\n".join(lines) + "\n"
