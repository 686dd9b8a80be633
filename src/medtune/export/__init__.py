"""Ship the model a study chose, out of the run directory: one merged Hugging Face folder, a GGUF file, or an
Ollama model (GGUF + Modelfile), each with a model card written from results.json.

    medtune export RUN --task T [--stage best|base|sft|dpo] --format hf|gguf|ollama --out DIR

choose.py picks the stage and its model, merged.py merges the adapter chain into one folder, gguf.py converts
that folder, modelfile.py writes Ollama's Modelfile, card.py the model card; ship.py runs them in order.
"""
