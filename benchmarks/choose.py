"""eval.label_answers: choose against generate, on the models of a finished study, side by side.

    make demo   # or any finished study
    .venv/bin/python benchmarks/choose.py --run runs/demo [--precision fp32] [--accel off]

For each label task and stage (base, SFT, DPO) of the run: both ways of answering its test items, one
after the other in this process, with the run's batch size. Prints the seconds of each and their ratio,
and the agreement where it is defined: on the items where generation wrote a well-formed answer,
choosing must give that answer (exactly so in fp32; in bf16 a near-tie may round the other way, as it does
between two batch sizes of generation, which the last column measures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished study's run directory")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--accel", choices=["auto", "off"], default="auto", help="medtune's speed switch")
    args = parser.parse_args()
    from medtune.config import load_config
    from medtune.evaluate.predict import predict
    from medtune.models import load_model, resolve_compute
    from medtune.progress import quiet_libraries
    from medtune.study import Run, is_trained, model_ref, stage_data
    from medtune.tasks import get_task

    quiet_libraries()
    if not (args.run / "config.yaml").is_file():
        sys.exit(f"{args.run}: not a study's run directory (no config.yaml)")
    cfg = load_config(args.run / "config.yaml").model_copy(update={"run_dir": args.run})  # wherever it lies now
    labelled = [name for name in cfg.tasks if get_task(name).labels is not None]
    missing = [f"{name}/{stage}" for name in labelled for stage in ("sft", "dpo")
               if not is_trained(cfg, get_task(name), stage)]
    if not labelled or missing:
        sys.exit(f"{args.run}: needs a finished study with a label task; "
                 f"{'no label task' if not labelled else 'not trained: ' + ', '.join(missing)}")
    compute = resolve_compute(cfg.device, args.precision, args.accel)
    run = Run(cfg, compute)
    batch = cfg.eval.batch_size
    rows, totals = [], {"generate_s": 0.0, "choose_s": 0.0, "well_formed": 0, "agree": 0, "batch_agree": 0}
    for name in labelled:
        task = get_task(name)
        examples = stage_data(run, task)["test"]
        for stage in ("base", "sft", "dpo"):
            model, tokenizer, _ = load_model(model_ref(cfg, task, stage), compute.device, compute.weights)
            start = time.perf_counter()
            generated = predict(model, tokenizer, task, examples, compute, batch, None)
            generate_s = time.perf_counter() - start
            start = time.perf_counter()
            chosen = predict(model, tokenizer, task, examples, compute, batch, None, label_answers="choose")
            choose_s = time.perf_counter() - start
            # rounding's own spread
            smaller = predict(model, tokenizer, task, examples, compute, max(1, batch // 8), None)
            formed = [i for i, (ex, row) in enumerate(zip(examples, generated)) if row["output"] in task.answers(ex)]
            row = {"task": name, "stage": stage, "generate_s": generate_s, "choose_s": choose_s,
                   "well_formed": len(formed),
                   "agree": sum(chosen[i]["output"] == generated[i]["output"] for i in formed),
                   "batch_agree": sum(a["output"] == b["output"] for a, b in zip(generated, smaller)),
                   "items": len(examples)}
            rows.append(row)
            for key in totals:
                totals[key] += row[key]
            print(f"{name:24} {stage:4}  generate {generate_s:5.2f} s  choose {choose_s:5.2f} s  "
                  f"({generate_s / choose_s:.2f}x)  well-formed {row['well_formed']:3}/{len(examples)}, "
                  f"chosen alike {row['agree']:3}; generation at batch {max(1, batch // 8)} alike "
                  f"{row['batch_agree']}/{len(examples)}", flush=True)
            del model
    print(f"all: generate {totals['generate_s']:.1f} s, choose {totals['choose_s']:.1f} s "
          f"({totals['generate_s'] / totals['choose_s']:.2f}x); chosen alike {totals['agree']}/{totals['well_formed']} "
          f"well-formed; precision {compute.precision}, accel {args.accel}")
    print(json.dumps({"precision": compute.precision, "accel": args.accel, "accel_pieces": sorted(compute.accel),
                      "rows": rows, **totals}))


if __name__ == "__main__":
    from run_all import reported_failures

    with reported_failures():
        main()
