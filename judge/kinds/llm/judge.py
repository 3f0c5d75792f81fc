"""A generative judge whose answer can only be a category of the taxonomy.

Two ways to get there, both constrained to the taxonomy:
- ``mode="score"`` (default): score every category's continuation under the model (the set is
  small) and take the most probable: exact search over the allowed outputs, and the per-category
  probabilities come for free. Batched, with the shared system prompt computed once.
- ``mode="generate"``: constrained decoding with outlines (a ``Literal`` of the categories), or with
  ``rationale=True`` a JSON object ``{rationale, label}`` whose label is a ``Literal``. Probabilities
  still come from scoring. A generation that cannot be parsed is recorded as unscored with the raw text.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from judge.core.errors import UserError
from judge.core.files import file_sha256
from judge.core.paths import DATA
from judge.core.taxonomy import Taxonomy
from judge.engines.base import LABEL_SLACK, as_label
from judge.engines.models import SMOLLM2, load_failure, model_revision, resolve_model
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.llm import Options

DEFAULT_TEMPLATE = DATA / "judge_prompts" / "default.yaml"
# How unscored reasons begin for rows an engine could not judge: judge.label counts them by these.
FAILED = "request failed"
OUTSIDE = "the engine's answer is not a category"
ITEM_MARK = "\u0000ITEM\u0000"


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "LLMJudge":
    from judge.core.taxonomy import load_taxonomy

    settings = {
        k: v for k, v in vars(options).items() if k != "label_map"
    }  # the map reaches the judge inside its taxonomy
    return LLMJudge(model=arg or None, taxonomy=taxonomy or load_taxonomy("chehbouni2024"), **settings)


def load_template(path: str | Path | None) -> dict[str, str]:
    from judge.core.config import check_format_template
    from judge.core.files import read_text

    path = Path(path or DEFAULT_TEMPLATE)
    if not path.is_file():
        raise UserError(f"prompt template {path} not found; copy {DEFAULT_TEMPLATE} and edit it")
    from judge.core.yaml_data import load_yaml

    data = load_yaml(read_text(path, what="prompt template"), source=f"prompt template {path.name}")
    if (
        not isinstance(data, dict)
        or not {"system", "user"} <= set(data)
        or not all(isinstance(data[k], str) for k in ("system", "user"))
    ):
        raise UserError(f"prompt template {path} needs 'system' and 'user' entries holding text")
    if "{response}" not in data["user"]:
        raise UserError(f"prompt template {path}: the user part must contain {{response}}")
    check_format_template(
        data["system"],
        {"taxonomy_description", "categories", "labels", "examples"},
        what=f"prompt template {path} (system)",
    )
    check_format_template(data["user"], {"prompt", "response"}, what=f"prompt template {path} (user)")
    return {"system": data["system"], "user": data["user"], "path": str(path), "sha256": file_sha256(path)}


def clip(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + " [...]"


class ExamplePicker:
    """K labelled examples per category: seeded (the same for every item) or most similar to the item."""

    def __init__(
        self,
        path: str | Path,
        taxonomy: Taxonomy,
        *,
        shots: int,
        seed: int,
        by_similarity: bool,
        max_chars: int = 300,
        label_column: str = "label",
    ):
        from judge.core.records import read_records

        records = read_records(path, label_columns=[label_column], label_hint="Name it with --examples-label-column.")
        records["label"] = records[label_column].map(taxonomy.canonical)
        records = records[records["label"].notna()].copy()
        if records.empty:
            raise UserError(
                f"{path} has no example whose {label_column!r} is in taxonomy {taxonomy.name!r}; check "
                "--examples-label-column "
                "or read coded labels with --label-map"
            )
        self.records, self.taxonomy, self.shots, self.max_chars = (
            records.reset_index(drop=True),
            taxonomy,
            shots,
            max_chars,
        )
        self.by_similarity = by_similarity
        rng = random.Random(seed)
        self.fixed = []
        for cat in taxonomy.labels:
            pool = list(self.records.index[self.records["label"] == cat])
            self.fixed += rng.sample(pool, min(shots, len(pool)))
        if by_similarity:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(self.records["response"])
            self.matrix = self.vectorizer.transform(self.records["response"])

    def render(self, rows: Sequence[int]) -> str:
        parts = []
        for i in rows:
            r = self.records.loc[i]
            parts.append(
                f"Request: {clip(r.get('prompt', ''), self.max_chars)}\nReply: "
                f"{clip(r['response'], self.max_chars)}\nCategory: {r['label']}"
            )
        return "Examples:\n\n" + "\n\n".join(parts) + "\n" if parts else ""

    def for_item(self, item: Item) -> str:
        if not self.by_similarity:
            return ""
        sims = (self.matrix @ self.vectorizer.transform([item.response]).T).toarray().ravel()
        rows = []
        for cat in self.taxonomy.labels:
            idx = np.flatnonzero((self.records["label"] == cat).to_numpy() & (self.records["id"] != item.id).to_numpy())
            rows += list(idx[np.argsort(-sims[idx], kind="stable")[: self.shots]])
        return self.render(rows)


class LLMJudge(Judge):
    kind = "llm"

    def __init__(
        self,
        model: str | None,
        taxonomy: Taxonomy,
        *,
        prompt_template: str | Path | None = None,
        examples: str | Path | None = None,
        examples_label_column: str = "label",
        shots: int = 0,
        similar_examples: bool = False,
        rationale: bool = False,
        mode: str = "score",
        seed: int = 0,
        device: str = "auto",
        max_response_chars: int = 1500,
        max_new_tokens: int = 400,
        engine: str = "hf",
        engine_options: dict | None = None,
    ):
        super().__init__(taxonomy)
        if mode not in ("score", "generate"):
            raise UserError(f"unknown LLM judge mode {mode!r}; use score or generate")
        self.model_spec = model or SMOLLM2
        self.mode = "generate" if rationale else mode
        self.rationale, self.seed, self.shots = rationale, seed, shots
        self.max_response_chars, self.max_new_tokens = max_response_chars, max_new_tokens
        self.template = load_template(prompt_template)
        self.engine_name, self.engine = engine, None
        if engine == "hf":
            self._load_in_process(device)
        else:
            self._open_engine(engine, engine_options, device)
        self.examples = None
        if examples and shots > 0:
            self.examples = ExamplePicker(
                examples,
                taxonomy,
                shots=shots,
                seed=seed,
                by_similarity=similar_examples,
                label_column=examples_label_column,
            )
        elif shots > 0:
            raise UserError("--shots needs --examples FILE (labelled records to draw the examples from)")
        self.system = self.template["system"].format(
            taxonomy_description=taxonomy.description,
            categories="\n".join(f"- {c.name}: {c.definition}" for c in taxonomy.categories),
            labels=", ".join(taxonomy.labels),
            examples=self.examples.render(self.examples.fixed) if self.examples and not similar_examples else "",
        )
        if self.engine is None:
            self._prepare_prefix()
            self._prepare_continuations()
        else:
            # Whether this engine scores labels exactly, known before the first row: the manifest says so up front.
            self.exact = self.engine.label_logprobs([], self.taxonomy.labels) is not None
        self._generator = None

    def _load_in_process(self, device: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from judge.core.devices import pick_device

        self.device, dtype = pick_device(device)
        path = resolve_model(self.model_spec)
        self.model_revision = model_revision(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        except OSError as exc:
            raise load_failure(self.model_spec, exc) from None
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _open_engine(self, engine: str, given: dict | None, device: str) -> None:
        """The model behind another engine (vLLM here, a server): the judge sends chats, the engine
        scores or chooses."""
        from judge.engines import engine_options, open_engine

        if self.rationale:
            raise UserError(
                "--rationale runs with --engine hf only (it decodes JSON with outlines in this process); drop it for "
                f"--engine {engine}"
            )
        self.device = device
        self.engine = open_engine(engine, self.model_spec, device=device, options=engine_options(engine, given))
        self.model_revision = self.engine.describe().get("revision")

    # -- prompt pieces -------------------------------------------------------------------------
    def messages(self, user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def render_chat(self, user: str) -> str:
        try:
            return self.tokenizer.apply_chat_template(self.messages(user), tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - templates without a system role: fold it into the user turn
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": self.system + "\n\n" + user}], tokenize=False, add_generation_prompt=True
            )

    def user_text(self, item: Item) -> str:
        examples = self.examples.for_item(item) if self.examples else ""
        return examples + self.template["user"].format(
            prompt=clip(item.prompt, 500), response=clip(item.response, self.max_response_chars)
        )

    def _prepare_prefix(self) -> None:
        rendered = self.render_chat(ITEM_MARK)
        if rendered.count(ITEM_MARK) != 1:
            raise UserError("the model's chat template does not keep the user message intact; use another model")
        prefix_text, self.suffix_text = rendered.split(ITEM_MARK)
        self.prefix_ids = self.tokenizer(prefix_text, add_special_tokens=False, return_tensors="pt").input_ids.to(
            self.device
        )
        with torch.inference_mode():
            out = self.model(input_ids=self.prefix_ids, use_cache=True)
        self.prefix_cache = out.past_key_values

    def _prepare_continuations(self) -> None:
        end = self.tokenizer.eos_token_id
        self.continuations = [
            self.tokenizer(c, add_special_tokens=False).input_ids + ([end] if end is not None else [])
            for c in self.taxonomy.labels
        ]
        self.first_tokens = torch.tensor([c[0] for c in self.continuations], device=self.device)

    # -- scoring -------------------------------------------------------------------------------
    @torch.inference_mode()
    def category_logprobs(self, batch: Sequence[Item]) -> np.ndarray:
        """log P(category + end of turn | prompt) for every item and category: (len(batch), K)."""
        tok = self.tokenizer
        suffixes = [tok(self.user_text(item) + self.suffix_text, add_special_tokens=False).input_ids for item in batch]
        B, P = len(batch), self.prefix_ids.shape[1]
        S = max(len(s) for s in suffixes)
        ids = torch.full((B, S), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((B, S), dtype=torch.long)
        for i, s in enumerate(suffixes):  # left-pad, so every row's last token sits in the last column
            ids[i, S - len(s) :] = torch.tensor(s)
            mask[i, S - len(s) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = copy.deepcopy(self.prefix_cache)
        cache.batch_repeat_interleave(B)
        attention = torch.cat([torch.ones((B, P), dtype=torch.long, device=self.device), mask], dim=1)
        # Positions count real tokens only, so padding does not shift them (batched == unbatched).
        positions = (P + mask.cumsum(dim=1) - 1).clamp(min=P)
        out = self.model(
            input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=cache, use_cache=True
        )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
        scores = first[:, self.first_tokens]  # (B, K)
        cache = out.past_key_values
        ahead = (P + mask.sum(dim=1)).unsqueeze(1)
        for k, cont in enumerate(self.continuations):
            if len(cont) < 2:
                continue
            # Score the rest of category k for the whole batch, then crop the cache back: no copies.
            steps = len(cont) - 1
            inputs = torch.tensor(cont[:-1], device=self.device).repeat(B, 1)
            attention_k = torch.cat([attention, torch.ones((B, steps), dtype=torch.long, device=self.device)], dim=1)
            positions_k = ahead + torch.arange(steps, device=self.device).unsqueeze(0)
            out_k = self.model(
                input_ids=inputs,
                attention_mask=attention_k,
                position_ids=positions_k,
                past_key_values=cache,
                use_cache=True,
            )
            logp = torch.log_softmax(out_k.logits.float(), dim=-1)
            targets = torch.tensor(cont[1:], device=self.device).repeat(B, 1)
            scores[:, k] += logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(dim=1)
            cache.crop(-steps)
        return scores.double().cpu().numpy()

    def probabilities(self, batch: Sequence[Item]) -> list[dict[str, float]]:
        logp = self.category_logprobs(batch)
        probs = np.exp(logp - logp.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return [{c: float(p) for c, p in zip(self.taxonomy.labels, row)} for row in probs]

    # -- constrained generation (outlines) -----------------------------------------------------
    def generator(self):
        if self._generator is None:
            import outlines
            from pydantic import BaseModel, Field

            choice = Literal[tuple(self.taxonomy.labels)]  # type: ignore[valid-type]
            if self.rationale:
                output_type = type(
                    "Verdict",
                    (BaseModel,),
                    {"__annotations__": {"rationale": str, "label": choice}, "rationale": Field(max_length=300)},
                )
            else:
                output_type = choice
            self._generator = outlines.Generator(outlines.from_transformers(self.model, self.tokenizer), output_type)
        return self._generator

    def generate(self, batch: Sequence[Item]) -> list[Judgement]:
        from outlines.inputs import Chat

        torch.manual_seed(self.seed)
        chats = [Chat(self.messages(self.user_text(item))) for item in batch]
        # A bare label can always finish: even spelled one character per token it fits this budget.
        budget = self.max_new_tokens if self.rationale else max(len(c) for c in self.taxonomy.labels) + 2
        raws = self.generator().batch(chats, max_new_tokens=budget, do_sample=False)
        out = []
        for raw, probs in zip(raws, self.probabilities(batch)):
            if self.rationale:
                try:
                    parsed = json.loads(raw)
                    label = self.taxonomy.canonical(parsed.get("label"))
                except (json.JSONDecodeError, AttributeError):
                    label, parsed = None, None
                if label is None:
                    out.append(
                        Judgement.unscored(
                            f"generation did not parse as {{rationale, label}} (cut at {self.max_new_tokens} new "
                            "tokens?)",
                            raw=raw,
                            probabilities=probs,
                        )
                    )
                    continue
                out.append(
                    Judgement(label=label, confidence=probs[label], probabilities=probs, raw=parsed.get("rationale"))
                )
            else:
                label = self.taxonomy.canonical(raw.strip())
                if label is None:
                    out.append(Judgement.unscored("generation is not a category", raw=raw, probabilities=probs))
                else:
                    out.append(Judgement(label=label, confidence=probs[label], probabilities=probs))
        return out

    # -- through an engine (vllm, openai) -------------------------------------------------------
    def requests(self, batch: Sequence[Item]) -> list:
        from judge.engines import ChatRequest

        return [
            ChatRequest(key=item.id, messages=(("system", self.system), ("user", self.user_text(item))), seed=self.seed)
            for item in batch
        ]

    def _engine_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        """Exact label probabilities where the engine scores them; otherwise (or with --mode generate) a constrained
        answer, checked against the taxonomy: the engine's word is data, never mapped onto a label it is not."""
        labels = self.taxonomy.labels
        requests = self.requests(batch)
        scores = self.engine.label_logprobs(requests, labels) if self.exact else None
        if scores is not None and self.mode == "score":
            return [self._scored(item.id, s) for item, s in zip(batch, scores)]
        budget = max(len(c) for c in labels) + 2  # a bare label can always finish, even one character per token
        chosen = self.engine.choose(requests, labels, max_new_tokens=budget)
        probs = [self._probabilities(s) for s in scores] if scores is not None else [{} for _ in batch]
        return [self._chosen(c, p) for c, p in zip(chosen, probs)]

    @staticmethod
    def _probabilities(logp: dict[str, float]) -> dict[str, float]:
        if not logp:
            return {}
        values = np.array(list(logp.values()), dtype=np.float64)
        probs = np.exp(values - values.max())
        probs /= probs.sum()
        return {c: float(p) for c, p in zip(logp, probs)}

    def _scored(self, key: str, logp: dict[str, float]) -> Judgement:
        if not logp:  # the engine's requests for this row failed every retry
            why = getattr(self.engine, "scoring_errors", {}).get(key, "no scores came back")
            return Judgement.unscored(f"{FAILED}: {why}")
        return Judgement.from_probabilities(self._probabilities(logp))

    def _chosen(self, completion, probs: dict[str, float]) -> Judgement:
        if completion.text is None:
            return Judgement.unscored(f"{FAILED}: {completion.error or 'no answer'}", probabilities=probs)
        # one meaning with the engine's count of answers outside the labels (as_label: stripped, of bounded length)
        text = as_label(completion.text, self.taxonomy.labels)
        if text is None:
            stripped = completion.text.strip()
            what = (
                f"{clip(stripped, 60)!r} (the engine ignored the constraint?)"
                if len(completion.text) <= max(map(len, self.taxonomy.labels)) + LABEL_SLACK
                else f"an answer of {len(completion.text)} characters, {clip(stripped, 40)!r} once stripped, is longer "
                "than any category and a little whitespace"
            )
            return Judgement.unscored(f"{OUTSIDE}: {what}", raw=completion.text, probabilities=probs)
        return Judgement(label=text, confidence=probs.get(text, float("nan")), probabilities=probs)

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        if self.engine is not None:
            return self._engine_batch(batch)
        if self.mode == "generate":
            return self.generate(batch)
        return [Judgement.from_probabilities(p) for p in self.probabilities(batch)]

    def describe(self) -> dict:
        if self.engine is not None:
            return {
                **self._describe_common(),
                "engine": self.engine.describe(),
                "probabilities": self.probability_source(),
                "decoding": {"scoring": "log P(category + end of turn)"}
                if self.mode == "score" and self.exact
                else {"constrained": "the engine's structured choice over the categories", "greedy": True},
            }
        common = self._describe_common()
        seed, device = common.pop("seed"), common.pop("device")  # the decoding comes before them, as it always did
        decoding = (
            {"greedy": True, "max_new_tokens": self.max_new_tokens}
            if self.mode == "generate"
            else {"scoring": "log P(category + end of turn)"}
        )
        return {**common, "decoding": decoding, "seed": seed, "device": device}

    def _describe_common(self) -> dict:
        return {
            **super().describe(),
            "model": self.model_spec,
            "model_revision": self.model_revision,
            "mode": self.mode,
            "rationale": self.rationale,
            "prompt_template": self.template["path"],
            "prompt_template_sha256": self.template["sha256"],
            "shots": self.shots,
            "examples": "similar"
            if self.examples and self.examples.by_similarity
            else ("seeded" if self.examples else None),
            "seed": self.seed,
            "device": str(self.device),
        }

    def probability_source(self) -> str:
        if self.exact:
            return f"exact ({self.engine.name}): each category's continuation scored under the model"
        why = getattr(self.engine, "label_scoring", "this engine cannot score a given continuation")
        return (
            f"unavailable ({self.engine.name}): {why.removeprefix('unavailable: ')}; the label is the engine's "
            "constrained choice, no probabilities are written"
        )
