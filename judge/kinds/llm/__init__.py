"""The LLM judge kind: a generative model asked for a category of the taxonomy (judge.py), run by an
engine (judge.engines); nothing to train. Its fingerprint is empty: the model id and its revision are in
the judge's description."""

from __future__ import annotations

from dataclasses import dataclass, field

from judge.kinds.spec import KindSpec


@dataclass
class Options:
    examples: str | None = field(default=None, metadata={"help": "labelled records to draw few-shot examples from"})
    examples_label_column: str = field(default="label", metadata={"help": "the --examples file's label column"})
    label_map: str | None = field(
        default=None, metadata={"help": "read the --examples file's coded labels as categories"}
    )
    shots: int = field(default=0, metadata={"help": "examples per category"})
    similar_examples: bool = field(default=False, metadata={"help": "pick the examples most similar to each item"})
    rationale: bool = field(
        default=False, metadata={"help": "generate a JSON {rationale, label} instead of a bare label"}
    )
    mode: str = field(
        default="score", metadata={"help": "score every category, or generate under outlines constraints"}
    )
    prompt_template: str | None = field(
        default=None, metadata={"help": "prompt file (default: data/judge_prompts/default.yaml)"}
    )
    max_new_tokens: int = field(default=400, metadata={"help": "generation budget of --rationale"})
    seed: int = field(default=0, metadata={"help": "seed for example selection and sampling"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda ..."})
    engine: str = field(
        default="hf", metadata={"help": "what runs the judge's model: hf (transformers here), vllm, openai"}
    )
    engine_options: dict | None = field(
        default=None, metadata={"help": "the engine's own flags (judge.engines), by option name"}
    )


SPEC = KindSpec(
    name="llm",
    title="the LLM judge",
    form="name",  # --judge llm, or llm:MODEL
    options=Options,
    load="judge.kinds.llm.judge:load",
    writes_raw=True,  # judge.label adds a PREFIX+raw column: the generated text
    runs_engine=True,
)
