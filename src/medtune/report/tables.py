"""The report's tables as plain rows of strings, shared by report.md and report.html."""

from __future__ import annotations

from ..evaluate.stats import signed

STAGES = ("base", "sft", "dpo")
STAGE_LABELS = {"base": "base", "sft": "SFT", "dpo": "DPO"}
COMPARISON_LABELS = {"sft_vs_base": "SFT vs base", "dpo_vs_sft": "DPO vs SFT", "dpo_vs_base": "DPO vs base"}
VERDICT_WORDS = {"sft_sufficient": "SFT is sufficient", "dpo_helps": "DPO helps", "no_gain": "neither step helps",
                 "inconclusive": "inconclusive"}
KIND_WORDS = {"underpowered": "underpowered", "no_difference_found": "no difference found", "mixed": "mixed",
              "incomplete": "not all stages evaluated"}
SPLIT_LABELS = {"test": "test", "shifted": "shifted"}
SPLIT_WORDS = {"test": "in-distribution test split", "shifted": "shifted test split"}
# what a comparison's CI rules out, short, for the tables (the verdict's reason says it in full)
FINDING_SHORT = {"gain": "gain ≥ {e:g}", "small_gain": "gain < {e:g}", "loss": "loss ≥ {e:g}",
                 "small_loss": "loss < {e:g}", "equivalent": "rules out ±{e:g}", "no_gain": "rules out +{e:g}",
                 "no_loss": "rules out −{e:g}", "underpowered": "rules out neither ±{e:g}"}
BASELINE_LABELS = {"majority": "majority class", "tfidf_logreg": "TF-IDF + logistic regression",
                   "lead_2_sentences": "first 2 sentences"}


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """'p=0.020' or 'p<0.001'."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def fmt_num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def fmt_metric(m: dict | None) -> str:
    if not m:
        return "–"
    if "ci_low" in m:
        return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
    return f"{m['value']:.3f}"


def holm_p(c: dict) -> float:
    return c.get("p_holm", c["p_value"])


def fmt_effect(c: dict) -> str:
    name, value = c.get("effect_size_name"), c.get("effect_size")
    if name is None or value is None:
        return "–"
    if name.startswith("odds ratio"):
        text = f"OR {value:.2f} ({c.get('a_only', 0)} vs {c.get('b_only', 0)} discordant)"
        if c.get("cohens_g") is not None:
            text += f", g {c['cohens_g']:+.2f}"
        return text
    if name.startswith("rank-biserial"):
        return f"r_rb {value:+.2f} ({c.get('a_better', 0)} up, {c.get('b_better', 0)} down, {c.get('ties', 0)} tied)"
    text = f"Δ {value:+.3f}"
    if c.get("cohens_dz") is not None:
        text += f", d_z {c['cohens_dz']:+.2f}"
    return text


def verdict_words(v: dict) -> str:
    """'SFT is sufficient', 'inconclusive (underpowered)', or 'DPO helps (by clinician review)'."""
    words = VERDICT_WORDS[v["verdict"]]
    if v.get("decided_by") == "review":
        return f"{words} (by clinician review)"
    return f"{words} ({KIND_WORDS[v['kind']]})" if v.get("kind") in KIND_WORDS else words


def finding_text(c: dict) -> str:
    """What the comparison's CI rules out against min_effect ('' for results written before findings)."""
    if "finding" not in c:
        return ""
    return FINDING_SHORT[c["finding"]].format(e=c["min_effect"])


def comparison_cell(c: dict | None) -> str:
    """The difference, its CI, the Holm p and what the CI rules out."""
    if not c:
        return "–"
    text = f"{signed(c['difference'])} [{signed(c['ci_low'])}, {signed(c['ci_high'])}], Holm {p_text(holm_p(c))}"
    return text + (f"; {finding_text(c)}" if finding_text(c) else "")


def splits(task: dict) -> dict[str, dict]:
    """The test splits a task was evaluated on: the in-distribution one (the task itself) and the shifted one."""
    return {"test": task, **({"shifted": task["shifted"]} if task.get("shifted") else {})}


def verdict_splits(task: dict) -> tuple[str, str | None]:
    """The split the verdict rests on, and the other split the task was evaluated on (None where it has one)."""
    split = task["verdict"].get("split", "test")
    return split, next((s for s in splits(task) if s != split), None)


def metric_names(task: dict) -> list[str]:
    names: list[str] = []
    for stage in STAGES:
        for metric in task["stages"].get(stage, {}).get("metrics", {}):
            if metric not in names:
                names.append(metric)
    return names


def stage_rows(task: dict) -> list[dict]:
    """Per metric: the three stages' values with CIs, and the baselines; the shifted split's values beside them
    where the task has one."""
    baselines = task.get("baselines") or {}
    shifted = task.get("shifted") or {}
    rows = []
    for metric in metric_names(task):
        rows.append({"metric": metric, "primary": metric in task["primary_metrics"],
                     "values": [fmt_metric(task["stages"].get(s, {}).get("metrics", {}).get(metric)) for s in STAGES],
                     "shifted_values": [fmt_metric(shifted["stages"].get(s, {}).get("metrics", {}).get(metric))
                                        for s in STAGES] if shifted else [],
                     "baselines": [fmt_num(baselines.get(b, {}).get(metric)) for b in baselines]})
    return rows


def comparison_rows(task: dict, alpha: float) -> list[dict]:
    rows = []
    for split, part in splits(task).items():
        for comp in COMPARISON_LABELS:
            for metric, c in part["comparisons"].get(comp, {}).items():
                rows.append({"split": SPLIT_LABELS[split], "comparison": COMPARISON_LABELS[comp], "metric": metric,
                             "primary": metric in task["primary_metrics"],
                             "difference": signed(c["difference"]),
                             "ci": f"[{signed(c['ci_low'])}, {signed(c['ci_high'])}]",
                             "test": c["test"], "p": fmt_p(c["p_value"]), "p_holm": fmt_p(holm_p(c)),
                             "significant": holm_p(c) < alpha, "effect": fmt_effect(c), "n": c.get("n"),
                             "rules_out": finding_text(c) or "–"})
    return rows


def per_class_rows(task: dict, head: str) -> list[dict]:
    """Per class: support and precision/recall/F1 for each stage."""
    stages = [s for s in STAGES if head in (task["stages"].get(s, {}).get("per_class") or {})]
    if not stages:
        return []
    labels = list(task["stages"][stages[0]]["per_class"][head])
    rows = []
    for label in labels:
        cells = []
        for s in STAGES:
            pc = (task["stages"].get(s, {}).get("per_class") or {}).get(head, {}).get(label)
            cells.append("–" if pc is None else f"{pc['precision']:.2f} / {pc['recall']:.2f} / {pc['f1']:.2f}")
        support = task["stages"][stages[0]]["per_class"][head][label]["support"]
        rows.append({"label": label, "support": support, "cells": cells})
    return rows


def heads(task: dict) -> list[str]:
    out: list[str] = []
    for s in STAGES:
        for head in (task["stages"].get(s, {}).get("confusion") or {}):
            if head not in out:
                out.append(head)
    return out


def best_baseline(task: dict, metric: str) -> str:
    values = [(v[metric], name) for name, v in (task.get("baselines") or {}).items() if v.get(metric) is not None]
    if not values:
        return "–"
    value, name = max(values)
    return f"{value:.3f} ({BASELINE_LABELS.get(name, name)})"


def summary_rows(results: dict) -> list[dict]:
    """The cross-task table, like the seed paper's: task x primary metric x test split, base/SFT/DPO, what each
    step's CI rules out, and the split's verdict (the task's verdict rests on one split, ``verdict_split``)."""
    rows = []
    for name, task in results["tasks"].items():
        for split, part in splits(task).items():
            for metric in task["primary_metrics"]:
                vals = [part["stages"].get(s, {}).get("metrics", {}).get(metric) for s in STAGES]
                v = part["verdict"]
                rows.append({"task": name, "split": SPLIT_LABELS[split], "metric": metric,
                             "values": [fmt_num(m["value"]) if m else "–" for m in vals],
                             "baseline": best_baseline(part, metric),
                             "sft_vs_base": comparison_cell(part["comparisons"].get("sft_vs_base", {}).get(metric)),
                             "dpo_vs_sft": comparison_cell(part["comparisons"].get("dpo_vs_sft", {}).get(metric)),
                             "verdict": v["verdict"], "verdict_words": verdict_words(v),
                             "decides": split == task["verdict"].get("split", "test")})
    return rows


def learning_notes(task: dict) -> list[str]:
    """What the fine-tuned model did not learn, said plainly, so that a task the model cannot learn at this
    size is not taken for a tool failure: one label answered to nearly every item, or SFT below a keyword
    baseline on the same items."""
    notes = []
    for stage in ("sft", "dpo"):
        for head, conf in (task["stages"].get(stage, {}).get("confusion") or {}).items():
            predicted = [sum(col) for col in zip(*conf["matrix"])]
            gold = [sum(row) for row in conf["matrix"]]
            total = sum(predicted)
            top = max(range(len(predicted)), key=predicted.__getitem__) if total else None
            if top is not None and predicted[top] >= 0.9 * total and max(gold) < 0.9 * total:
                notes.append(f"{STAGE_LABELS[stage]} answered {conf['columns'][top]!r} ({head}) to {predicted[top]} "
                             f"of {total} items, though the references are more varied: it learned the answer's "
                             "form, not the rule that picks it.")
    same = [c for m, c in task["comparisons"].get("dpo_vs_sft", {}).items() if m in task["primary_metrics"]]
    if same and all(c["difference"] == c["ci_low"] == c["ci_high"] == 0 for c in same):
        steps = (task["stages"].get("dpo", {}).get("training") or {}).get("steps")
        notes.append(f"DPO{f' ({steps} steps)' if steps else ''} left every primary score as SFT had it: this "
                     "DPO run changed too little to measure what DPO can do (more dpo.max_steps, or a higher "
                     "dpo.learning_rate, would).")
    sft = task["stages"].get("sft", {}).get("metrics", {})
    for metric in task["primary_metrics"]:
        best = [(v[metric], name) for name, v in (task.get("baselines") or {}).items() if v.get(metric) is not None]
        if metric in sft and best and max(best)[0] - sft[metric]["ci_high"] > 0:
            value, name = max(best)
            notes.append(f"SFT's {metric} ({sft[metric]['value']:.3f}, CI up to {sft[metric]['ci_high']:.3f}) stayed "
                         f"below the {BASELINE_LABELS.get(name, name)} baseline ({value:.3f}) on the same items: at "
                         "this training size the model did not learn what a keyword model finds. More SFT steps or "
                         "a larger model may (docs/datasets.md says what each bundled task asks of a model).")
    return notes


def n_items(task: dict) -> int | None:
    return next((m["n"] for s in task["stages"].values() for m in s.get("metrics", {}).values()), None)


def pairs_line(p: dict) -> str:
    if p.get("from_review"):
        skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (p.get("skipped") or {}).items() if v)
        return (f"{p.get('pairs', 0)} preference pairs from the clinicians' judgments of {p.get('items', '?')} test "
                f"items ({p['from_review']}){f'; items skipped: {skipped}' if skipped else ''}. DPO trained on test "
                "items: its metrics on this test set are no fair estimate.")
    rate = p.get("sft_error_rate_on_train")
    sources = ", ".join(f"{k}: {v}" for k, v in (p.get("pairs_per_source") or {}).items()) or "none"
    text = f"{p.get('pairs', 0)} preference pairs from {p.get('prompts_tried', '?')} training prompts ({sources})"
    if rate is not None:
        text += f"; SFT error rate on sampled training outputs {rate:.1%}"
    return text + "."


def training_line(task: dict) -> str | None:
    timing = []
    for stage in ("sft", "dpo"):
        t = task["stages"].get(stage, {}).get("training")
        if t and t.get("train_runtime_s") is not None:
            timing.append(f"{stage.upper()} {t.get('steps', '?')} steps in {t['train_runtime_s']:.0f} s")
    if not timing:
        return None
    return "Training: " + "; ".join(timing) + "." + dpo_health(task["stages"].get("dpo", {}).get("training") or {})


def dpo_health(t: dict) -> str:
    """Held-out pair metrics at the end of DPO, and what the collapse guard did."""
    text = ""
    if t.get("heldout"):
        h = t["heldout"][-1]
        text += (f" Held-out pairs ({t.get('heldout_pairs')}): reward accuracy {h.get('rewards/accuracies', 0):.2f}, "
                 f"margin {h.get('rewards/margins', 0):+.3f}, chosen log-prob {h.get('chosen_logp_change_per_token', 0):+.2f} "
                 f"nats/token since the start of DPO.")
        check = t.get("task_check") or {}
        if check.get("active") and "task_accuracy" in h:
            text += (f" Prompts DPO did not train on, answered correctly ({check['prompts']}): {check['accuracy_start']:.2f} "
                     f"before DPO, {h['task_accuracy']:.2f} after.")
    c = t.get("collapse") or {}
    if c.get("fired"):
        when = f"at step {c['step']}" + (", the last evaluation" if c.get("at_end") else "")
        if c.get("reason") == "task_accuracy":
            text += (f" Collapse guard fired {when}: held-out task accuracy fell from "
                     f"{c['task_accuracy_start']:.2f} to {c['task_accuracy']:.2f} (McNemar p={c['p_value']:.3f}, "
                     f"threshold {c['threshold']})")
        elif c.get("reason") == "one_label":
            text += (f" Collapse guard fired {when}: the model answered {c['label']!r} ({c['head']}) to "
                     f"{c['share']:.0%} of the held-out prompts, though {c['reference_share']:.0%} of their "
                     "references say so")
        else:
            text += (f" Collapse guard fired {when}: the held-out chosen log-prob fell "
                     f"{c['chosen_logp_drop_per_token']:.2f} nats/token (threshold {c['threshold']})")
        restored = c.get("restored")
        if not restored:
            text += "; training went on (stop_on_collapse is off)."
        elif restored["step"] == 0:
            text += "; DPO's starting weights (the SFT model) were kept, so the DPO model equals SFT here."
        else:
            kept_by = ("task accuracy", restored["heldout_task_accuracy"]) if "heldout_task_accuracy" in restored \
                else ("reward accuracy", restored["heldout_reward_accuracy"])
            text += f"; the weights of step {restored['step']} (held-out {kept_by[0]} {kept_by[1]:.2f}) were kept."
    return text


def all_stages(results: dict) -> list[dict]:
    return [s for t in results["tasks"].values() for s in t["stages"].values()]


def label_answers_note(results: dict) -> str:
    """A sentence for runs whose label tasks chose their answers ('' where they generated them)."""
    if not any(s.get("label_answers") == "choose" for s in all_stages(results)):
        return ""
    return ("The label tasks' answers were chosen among each item's well-formed answers (eval.label_answers: "
            "choose), not generated: a model that does not keep to the answer format still gives a label.")


def number_formats(results: dict) -> str:
    """Which formats the matmuls ran in, for evaluation and for training ('' for runs older than the record)."""
    stages = all_stages(results)
    parts = []
    for what, seen in (("evaluation", {s.get("precision") for s in stages if "metrics" in s}),
                       ("training", {s.get("training", {}).get("precision") for s in stages if "training" in s})):
        seen.discard(None)
        if seen:
            parts.append(f"{what} {' and '.join(sorted(seen))}")
    return ", ".join(parts)


# ------------------------------------------------------------------ the clinician review

def review_view(task: dict) -> dict | None:
    """The clinician review (results.json ``review``) as strings for both reports; None where the run has none."""
    review = task.get("review")
    if not review:
        return None
    rows = []
    for c in review["comparisons"].values():
        rows += review_rows(c)
    grades = ", ".join(f"{STAGE_LABELS.get(s, s)} {g['mean']:.2f} (n={g['n']})" for s, g in review["grades"].items())
    return {"judgments": review["judgments"], "reviewers": ", ".join(review["reviewers"]), "n_items": review["items"],
            "rows": rows, "agreement": [agreement_line(c) for c in review["comparisons"].values()],
            "grades": grades or None,
            "unsafe": [[STAGE_LABELS.get(f["stage"], f["stage"]), f["item"], f["reviewer"], f["reason"] or "–"]
                       for f in review["unsafe"]]}


def review_rows(c: dict) -> list[dict]:
    """One comparison: the pooled row (per-item majority), then one row per reviewer."""
    first, second = (STAGE_LABELS.get(s, s) for s in c["stages"])
    rate = c["win_rate"]
    pooled = {"comparison": f"{second} vs {first}", "who": "all (per-item majority)", "wins": c["wins"],
              "ties": c["ties"], "losses": c["losses"], "n": c["items"], "p": fmt_p(c["sign_test"]["p_value"]),
              "significant": c["significant"],
              "win_rate": "–" if rate["value"] is None else
              f"{rate['value']:.2f} [{rate['ci_low']:.2f}, {rate['ci_high']:.2f}]"}
    return [pooled] + [{"comparison": "", "who": name, "wins": r["wins"], "ties": r["ties"], "losses": r["losses"],
                        "n": r["n"], "p": fmt_p(r["p_value"]), "significant": False, "win_rate": "–"}
                       for name, r in c["per_reviewer"].items()]


def agreement_line(c: dict) -> str:
    """'DPO vs SFT: Cohen's kappa 0.82 on 12 items both reviewers judged (observed agreement 92%).'"""
    first, second = (STAGE_LABELS.get(s, s) for s in c["stages"])
    a = c.get("agreement")
    if not a:
        return f"{second} vs {first}: no item was judged by two reviewers, so their agreement is not measured."
    kappa = "undefined (every judgment the same)" if a["kappa"] is None else f"{a['kappa']:.2f}"
    who = "both reviewers" if a["method"].startswith("Cohen") else f"all {len(a['reviewers'])} reviewers"
    seen = f" (observed agreement {a['observed_agreement']:.0%})" if a.get("observed_agreement") is not None else ""
    return f"{second} vs {first}: {a['method']} {kappa} on {a['shared_items']} item(s) {who} judged{seen}."
