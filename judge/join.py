"""Join the parts of a sharded run into the one output an unsharded run writes, byte for byte.

Examples (each share may run on its own machine; the join needs only the parts and their manifests):
    python -m judge.label --judge rules --input outputs.jsonl --shard 1/2 --out part1.jsonl
    python -m judge.label --judge rules --input outputs.jsonl --shard 2/2 --out part2.jsonl
    python -m judge.join part1.jsonl part2.jsonl --out labelled.jsonl
    python -m generation --prompts prompts.jsonl --samples 3 --shard 1/3 --out g1.parquet   # likewise 2/3, 3/3
    python -m judge.join g1.parquet g2.parquet g3.parquet --out outputs.jsonl              # any format in, any out

A run with --shard I/N computes only its share of the fixed batch plan (the batches whose number is
I-1 modulo N) and records, beside its rows, where each goes in the whole output. The join checks
that the parts come from one run (the same settings, inputs and model) and one plan, that shares
1..N are each there once and finished, and that every row of the whole is in exactly one part; then
it writes the rows in input order in the --out format, with a manifest naming the parts and their
sha256. Joining parts to the format they were written in gives the bytes of one unsharded run;
parts read from CSV carry text only, so write CSV parts to join into CSV.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from judge.core.config import parser_for, run_command
from judge.core.errors import UserError, short_list
from judge.core.outputs import claim_for

# pandas and the records layer are imported in main(): --help and a bad flag answer at once.


@dataclass
class Config:
    parts: str | list[str] = field(
        metadata={
            "positional": True,
            "nargs": "+",
            "metavar": "PART",
            "help": "the outputs of one run's shares (--shard 1/N ... N/N), in any order and format",
        }
    )
    out: str = field(metadata={"help": "the joined output (JSONL, CSV or Parquet)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an output judge.join wrote before"})
    allow_failed: bool = field(
        default=False,
        metadata={
            "help": "join parts that still hold rows whose requests failed every retry (refused by default: rerun "
            "those parts' commands to fill them first)"
        },
    )

    def __post_init__(self):
        self.parts = [self.parts] if isinstance(self.parts, str) else list(self.parts)
        if not self.parts:
            raise UserError("give the part files to join (the outputs of runs with --shard I/N)")
        twice = [p for i, p in enumerate(self.parts) if p in self.parts[:i]]
        if twice:
            raise UserError(f"part {Path(twice[0]).name} is given twice; give each part file once")


def main(config: Config):
    with claim_for(config, "judge.join", inputs=("parts",), directory=False):
        return _main(config)


def _main(config: Config):
    from judge.core.manifest import RunManifest
    from judge.core.records import file_format
    from judge.run.resumable import unsharded
    from judge.run.shard_part import read_part

    out = Path(config.out)
    file_format(out)
    if out.exists() and not config.overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    names = [Path(p).name for p in config.parts]
    parts = [read_part(p) for p in config.parts]
    manifests = [m for m, _ in parts]
    check_one_run(manifests, names)
    if not config.allow_failed:
        check_no_failed_rows([raw for _, raw in parts], names)
    check_same_arithmetic([raw for _, raw in parts], names)
    check_shares(manifests, names)
    check_positions(manifests, names)
    n_rows = write_joined(config.parts, manifests, out)
    first, raw = manifests[0], parts[0][1]
    manifest = RunManifest(
        "judge.join",
        config,
        inputs=config.parts,
        of=first.command,
        parts=[
            {"file": name, "shard": str(m.part.shard), "sha256": m.output_sha256} for name, m in zip(names, manifests)
        ],
        identity=unsharded(first.identity),
        **{k: raw[k] for k in ("judge", "engine", "engine_options", "model") if k in raw},
    )
    # The settings of the run the parts are shares of: what a reader of one unsharded output finds there.
    manifest.update(settings=first.settings, join_settings={"parts": names, "out": out.name})
    manifest.write(out, rows=n_rows, parts=len(parts))
    print(f"joined {len(parts)} parts ({n_rows} rows of one {first.command} run) -> {out}")
    return manifest.data


def check_no_failed_rows(raws: list[dict], names: list[str]) -> None:
    """A part that completed with rows whose requests failed every retry is refused (its command, run again, asks
    again for those): a joined file would hide them among the rows."""
    for raw, name in zip(raws, names):
        counts = raw.get("counts") if isinstance(raw, dict) else None
        failed = counts.get("failed") if isinstance(counts, dict) else None
        if isinstance(failed, int) and not isinstance(failed, bool) and failed > 0:
            raise UserError(
                f"part {name} holds {failed} failed row(s) (their requests failed every retry); rerun its command to "
                "ask again for them, or pass --allow-failed to join them as they are"
            )


def check_one_run(manifests, names) -> None:
    base, base_name = manifests[0], names[0]
    for m, name in zip(manifests[1:], names[1:]):
        if m.command != base.command:
            raise UserError(
                f"{name} is a part of a {m.command} run and {base_name} of a {base.command} run; join the parts of one "
                "run"
            )
        if m.part.run != base.part.run:
            raise UserError(
                f"{name} and {base_name} are parts of two runs (their settings, inputs or model differ); join the "
                "parts of one run"
            )
        if m.part.plan != base.part.plan or m.part.total != base.part.total:
            raise UserError(
                f"{name} and {base_name} were cut from two batch plans; rerun their shares with one version of the "
                "toolkit"
            )
        if m.part.count != base.part.count:
            raise UserError(
                f"{base_name} is share {base.part.shard} and {name} is share {m.part.shard}: one run splits into one "
                "N; "
                "join the parts of one --shard I/N split"
            )


# What a model judge's description says about how its numbers were computed: shares computed
# otherwise differ in the last bits, so joining them would not be the bytes of one run.
ARITHMETIC = (("cpu", "model"), ("torch_threads",), ("precision",), ("device",), ("gpu",))


def arithmetic(raw: dict) -> dict[str, str]:
    """The part manifest's (untrusted) judge description, reduced to the ARITHMETIC keys it has, as short text."""
    judge = raw.get("judge") if isinstance(raw, dict) else None
    out = {}
    for path in ARITHMETIC:
        value = judge
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            out[".".join(path)] = str(value)[:80]
    return out


def check_same_arithmetic(raws: list[dict], names: list[str]) -> None:
    base = arithmetic(raws[0])
    for raw, name in zip(raws[1:], names[1:]):
        here = arithmetic(raw)
        differ = [k for k in sorted(set(base) | set(here)) if base.get(k) != here.get(k)]
        if differ:
            key = differ[0]
            raise UserError(
                f"{name} was computed with {key} {here.get(key, '(none)')} and {names[0]} with "
                f"{base.get(key, '(none)')}: "
                "their scores differ in the last bits; rerun the shares on one kind of machine with one thread count "
                "(OMP_NUM_THREADS)"
            )


def check_shares(manifests, names) -> None:
    count = manifests[0].part.count
    seen = Counter(m.part.index for m in manifests)
    twice = sorted(i for i, n in seen.items() if n > 1)
    if twice:
        holders = [name for name, m in zip(names, manifests) if m.part.index == twice[0]]
        raise UserError(
            f"share {twice[0]}/{count} is given twice ({short_list(holders, limit=3)}); give each share once"
        )
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing:
        raise UserError(
            f"share(s) {short_list([f'{i}/{count}' for i in missing], limit=4)} missing (given: "
            f"{short_list([str(m.part.shard) for m in manifests], limit=4)}); add the part written with --shard "
            f"{missing[0]}/{count}"
        )


def check_positions(manifests, names) -> None:
    """Every row of the whole in exactly one part (each part's own positions are distinct, by schema)."""
    total = manifests[0].part.total
    owner: dict[int, str] = {}
    for m, name in zip(manifests, names):
        for position in m.part.positions:
            if position in owner:
                raise UserError(
                    f"row {position} of the whole is in both {owner[position]} and {name}; rerun one of those shares "
                    "with --overwrite"
                )
            owner[position] = name
    if len(owner) != total:
        hole = next(i for i in range(total) if i not in owner)
        raise UserError(
            f"row {hole} of the whole ({total - len(owner)} in all) is in no part; rerun the shares with --overwrite"
        )


def write_joined(paths, manifests, out: Path) -> int:
    """Write the whole output; returns its number of rows."""
    from judge.core.files import atomic_write
    from judge.core.records import file_format, write_records

    for path, manifest in zip(paths, manifests):
        check_unchanged(path, manifest)
    if file_format(out) == "parquet" and all(file_format(p) == "parquet" for p in paths):
        import pyarrow.parquet as pq

        table = place_arrow_rows(paths, manifests)
        atomic_write(out, lambda handle: pq.write_table(table, handle), overwrite=True, binary=True)
        return table.num_rows
    joined = place_rows([read_rows(p, m) for p, m in zip(paths, manifests)], manifests)
    write_records(joined, out, overwrite=True)
    return len(joined)


def check_unchanged(path, manifest) -> None:
    from judge.core.files import file_sha256

    if file_sha256(path) != manifest.output_sha256:
        raise UserError(
            f"part {Path(path).name} was changed after its run wrote it (its sha256 differs from its manifest's); "
            "rerun that share with --overwrite"
        )


def read_rows(path, manifest):
    import pandas as pd

    from judge.core.records import read_table

    name = Path(path).name
    expected = len(manifest.part.positions)
    if expected == 0:
        return pd.DataFrame()
    rows = read_table(path)
    if len(rows) != expected:
        raise UserError(
            f"part {name} holds {len(rows)} rows, and its manifest places {expected}; rerun that share with --overwrite"
        )
    return rows


def place_rows(frames, manifests):
    """The parts' rows in the order of the whole output."""
    import numpy as np
    import pandas as pd

    kept = [(f, m) for f, m in zip(frames, manifests) if len(m.part.positions)]
    rows = pd.concat([f for f, _ in kept], ignore_index=True, sort=False)
    positions = np.concatenate([np.asarray(m.part.positions, dtype=np.int64) for _, m in kept])
    return rows.iloc[np.argsort(positions, kind="stable")].reset_index(drop=True)


def place_arrow_rows(paths, manifests):
    """Parquet parts joined as Arrow tables, so every column keeps the type the whole run's would have: a
    column with no value in one share (null there) takes its type, and its pandas metadata, from another."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    kept = [(p, m) for p, m in zip(paths, manifests) if len(m.part.positions)]
    tables = []
    for path, manifest in kept:
        try:
            tables.append(pq.read_table(path))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged file
            raise UserError(
                f"part {Path(path).name} is not a readable Parquet file ({' '.join(str(exc).split())[:100]}); rerun "
                "that share with --overwrite"
            ) from None
        if tables[-1].num_rows != len(manifest.part.positions):
            raise UserError(
                f"part {Path(path).name} holds {tables[-1].num_rows} rows, and its manifest places "
                f"{len(manifest.part.positions)}; "
                "rerun that share with --overwrite"
            )
    try:
        merged = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UserError(
            f"the parts' columns do not fit together ({' '.join(str(exc).split())[:100]}); join the parts of one run"
        ) from None
    order = np.argsort(np.concatenate([np.asarray(m.part.positions, dtype=np.int64) for _, m in kept]), kind="stable")
    merged = merged.take(pa.array(order))
    return merged.replace_schema_metadata(_joined_metadata(tables, merged.schema))


def _joined_metadata(tables, schema) -> dict:
    """The first part's schema metadata, with each column's pandas entry from a part where it holds values."""
    import json

    import pyarrow as pa

    metadata = dict(tables[0].schema.metadata or {})
    if b"pandas" not in metadata:
        return metadata
    pandas = json.loads(metadata[b"pandas"])
    entries = {}
    for table in tables:
        described = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}")).get("columns", [])
        for entry in described:
            name = entry.get("field_name")
            if name in table.schema.names and (name not in entries or pa.types.is_null(entries[name][1])):
                entries[name] = (entry, table.schema.field(name).type)
    pandas["columns"] = [entries[name][0] for name in schema.names if name in entries]
    metadata[b"pandas"] = json.dumps(pandas).encode("utf8")  # as pyarrow writes it
    return metadata


def build_parser():
    return parser_for(Config, "python -m judge.join", __doc__)


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
