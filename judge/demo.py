"""The whole study, offline, on the embedded defaults: prompts -> outputs -> judge -> reports.

Examples:
    python -m judge.demo                       # writes runs/demo/ (the README's `make demo`)
    python -m judge.demo --prompts 12 --no-llm-judge --out runs/quick

Steps (each is skipped when its output already exists with the same settings, so a second run
reuses what is done):
  1. prompts: templates x names from data/ (a seeded sample of --prompts)
  2. outputs: --samples generations per prompt from the bundled SmolLM2-135M-Instruct
  3. judge:   the default LoRA judge (MiniLM) trained on 80% of the maintainers' annotated sample
  4. labels:  the held-out 20% and the generated outputs, labelled by the LoRA judge and the LLM judge
  5. reports: agreement with the sample's labels (and between the two judges), disparity by group
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from judge import agree, label, report
from judge.core.config import check_positive, check_seed, parser_for, run_command
from judge.core.errors import UserError
from judge.core.manifest import RunManifest, read_manifest, settings_of
from judge.core.outputs import check_apart, claim_output, output_lock
from judge.core.paths import DATA, SAMPLE
from judge.core.records import read_records, write_records


@dataclass
class Config:
    out: str = field(default="runs/demo", metadata={"help": "output folder"})
    prompts: int = field(default=36, metadata={"help": "how many prompts to sample from data/"})
    samples: int = field(default=2, metadata={"help": "outputs per prompt"})
    max_new_tokens: int = 48
    llm_judge: bool = field(default=True, metadata={"help": "skip the LLM judge (faster)"})
    seed: int = 0
    overwrite: bool = field(default=False, metadata={"help": "redo every step"})

    def __post_init__(self):
        # every value is checked before the first file is written
        check_positive(self, "prompts", "samples", "max_new_tokens")
        check_seed(self)


def banner(step: str) -> None:
    print(f"\n== {step}", file=sys.stderr, flush=True)


def done_before(out: Path, config) -> bool:
    """The output exists and its manifest records the same settings."""
    manifest = read_manifest(out)
    return out.exists() and manifest is not None and manifest.get("settings") == settings_of(config)


def claim_demo_folder(out: Path) -> None:
    """The demo writes into a folder of its own: new, empty, or one an earlier demo run made."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; the demo writes a folder: choose another --out")
    if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        if (read_manifest(out) or {}).get("command") != "judge.demo":
            raise UserError(f"{out} holds files judge.demo did not write (no demo manifest.json); choose another --out")
    check_apart(out, [DATA, SAMPLE], directory=True)


def main(config: Config) -> dict:
    out = Path(config.out)
    claim_demo_folder(out)
    with output_lock(out):
        return _main(config)


def _main(config: Config) -> dict:
    import generation.__main__ as generate
    from generation import prompts as prompt_sets
    from training.build import TrainConfig, train_judge
    from training.examples import stratified_split

    started = time.perf_counter()
    out = Path(config.out)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    manifest = RunManifest("judge.demo", config)
    if read_manifest(out) is None:
        manifest.write(out)  # marks the folder as the demo's from the first step, so a killed run can resume
    ow = config.overwrite

    banner("1/5 prompt set: data/templates x data/names")
    prompts_cfg = prompt_sets.Config(
        templates=str(DATA / "templates" / "templates.json"),
        names=str(DATA / "names" / "names.json"),
        out=str(out / "prompts.jsonl"),
        sample=config.prompts,
        seed=config.seed,
        overwrite=ow,
    )
    if not done_before(out / "prompts.jsonl", prompts_cfg) or ow:
        prompt_sets.main(prompts_cfg)

    banner("2/5 outputs from the bundled SmolLM2-135M-Instruct (first run converts the GGUF once, ~35 s)")
    generate.main(
        generate.Config(
            prompts=str(out / "prompts.jsonl"),
            out=str(out / "outputs.jsonl"),
            samples=config.samples,
            max_new_tokens=config.max_new_tokens,
            seed=config.seed,
            overwrite=ow,
        )
    )

    banner("3/5 LoRA judge (all-MiniLM-L6-v2) trained on 80% of data/sample")
    sample = read_records(SAMPLE)
    train_idx, held_idx = stratified_split(
        sample["label"].astype("category").cat.codes.to_numpy(), val_fraction=0.2, seed=config.seed
    )
    for name, idx in (("sample_train.jsonl", train_idx), ("sample_heldout.jsonl", held_idx)):
        split = {"source": str(SAMPLE), "part": name, "seed": config.seed, "val_fraction": 0.2}
        if not done_before(out / name, split) or ow:
            with claim_output(out / name, command="judge.demo split", inputs=[SAMPLE], overwrite=ow, directory=False):
                write_records(sample.iloc[idx], out / name, overwrite=ow)
                RunManifest("judge.demo split", split, inputs=[SAMPLE]).write(out / name, records=len(idx))
    train_cfg = TrainConfig(
        train=[str(out / "sample_train.jsonl")],
        out=str(out / "judge"),
        taxonomy="chehbouni2024",
        seed=config.seed,
        overwrite=ow,
    )
    if not done_before(out / "judge", train_cfg) or ow:
        train_judge(train_cfg)
    else:
        print(f"reusing the judge in {out / 'judge'}")

    banner("4/5 labelling: held-out sample and generated outputs")
    judges = [("judge_", str(out / "judge"))] + ([("llm_", "llm")] if config.llm_judge else [])
    for stem in ("sample_heldout", "outputs"):
        current = out / f"{stem}.jsonl"
        for prefix, spec in judges:
            target = out / f"{stem}.{prefix.rstrip('_')}.jsonl"
            label.main(
                label.Config(
                    judge=spec,
                    input=str(current),
                    out=str(target),
                    prefix=prefix,
                    taxonomy="chehbouni2024",
                    overwrite=ow,
                )
            )
            current = target

    banner("5/5 reports")
    last = judges[-1][0].rstrip("_")
    held, outputs = out / f"sample_heldout.{last}.jsonl", out / f"outputs.{last}.jsonl"
    runs = [(held, "label", "judge_label", "agreement_lora_vs_sample")]
    if config.llm_judge:
        runs += [
            (held, "label", "llm_label", "agreement_llm_vs_sample"),
            (outputs, "judge_label", "llm_label", "agreement_lora_vs_llm_on_outputs"),
        ]
    for src, gold, pred, name in runs:
        agree.main(
            agree.Config(
                input=str(src),
                gold=gold,
                pred=pred,
                taxonomy="chehbouni2024",
                out=str(out / "reports" / name),
                overwrite=True,
            )
        )
    report.main(
        report.Config(
            input=str(outputs),
            label="judge_label",
            group=["identity", "common"],
            taxonomy="chehbouni2024",
            out=str(out / "reports" / "disparity_outputs"),
            overwrite=True,
        )
    )
    report.main(
        report.Config(
            input=str(SAMPLE),
            label="label",
            group=["identity", "common"],
            taxonomy="chehbouni2024",
            out=str(out / "reports" / "disparity_sample_human"),
            overwrite=True,
        )
    )
    seconds = time.perf_counter() - started
    manifest.write(out, status="complete")
    print(f"\nDone in {seconds:.0f}s. Files under {out}/:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(out)}")
    print(
        f"Start with {out / 'reports' / 'agreement_lora_vs_sample' / 'agreement.md'} and "
        f"{out / 'reports' / 'disparity_outputs' / 'disparity.md'}."
    )
    return {"seconds": seconds}


def build_parser():
    return parser_for(Config, "python -m judge.demo", __doc__)


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
