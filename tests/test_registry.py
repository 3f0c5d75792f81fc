"""The registry of judge kinds (issues 21, 28): every command looks a kind up in judge.kinds.KINDS,
each kind is one typed KindSpec, an option the kind does not take is refused in one place, inference
never imports training/, and a judge directory is replaced in one atomic step."""
import ast
import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from judge import annotate, label, swap, train
from judge.core.paths import ROOT, SAMPLE
from judge.kinds import KINDS, KindSpec, directory_kinds, load_judge, masks_names, specs
from judge.kinds.spec import dotted, one_of
from tests.badinput import assert_refused
from tests.conftest import run_cli

ROWS = [{"id": f"r{i}", "prompt": f"Name{i} got into the plane to [BLANK]", "response": "to fly home" if i % 3 else "I cannot help with that.",
         "label_a": "answer" if i % 3 else "refusal", "label_b": "answer" if i % 4 else "refusal", "label": "answer" if i % 3 else "refusal",
         "identity": "muslim" if i % 2 else "white", "name": f"Name{i}"} for i in range(24)]


@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    """A TF-IDF judge trained on the bundled sample, and an ensemble of TF-IDF and the rules."""
    root = tmp_path_factory.mktemp("judges")
    train.main(train.Config(train=[str(SAMPLE)], out=str(root / "tf"), kind="tfidf", taxonomy="chehbouni2024", progress=False))
    train.main(train.Config(train=[str(SAMPLE)], out=str(root / "ens"), kind="ensemble", members=["tfidf", "rules"], cv=3,
                            taxonomy="chehbouni2024", progress=False))
    return root


@pytest.fixture()
def files(tmp_path, judges):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    forest = d / "forest"
    forest.mkdir()
    (forest / "judge.json").write_text(json.dumps({"kind": "forest", "labels": ["a", "b"], "files": {}}))
    return d


G = "{d}/good.jsonl"
OUT_FILE = "{t}/out.jsonl"
OUT_DIR = "{t}/out"
TF = "{j}/tf"
LABEL = ["--input", G, "--out", OUT_FILE]

CASES = [
    # judge.label: the kind of --judge DIR comes from DIR/judge.json, and only its options are taken
    (label, ["--judge", TF, *LABEL, "--precision", "int8"], ["--precision", "LoRA judge", "not the TF-IDF judge (--judge tf)", "drop it"]),
    (label, ["--judge", TF, *LABEL, "--precision", "fp32"], ["--precision", "not the TF-IDF judge"]),
    (label, ["--judge", TF, *LABEL, "--precision", "bf16"], ["--precision", "LoRA judge", "TF-IDF judge"]),
    (label, ["--judge", "tfidf:" + TF, *LABEL, "--precision", "int8"], ["--precision", "TF-IDF judge"]),
    (label, ["--judge", "rules", *LABEL, "--shots", "2"], ["--shots", "LLM judge", "not the keyword rules judge (--judge rules)"]),
    (label, ["--judge", "rules", *LABEL, "--rationale", "--similar-examples"], ["--similar-examples, --rationale", "LLM judge", "drop them"]),
    (label, ["--judge", TF, *LABEL, "--prompt-template", "{d}/good.jsonl"], ["--prompt-template", "LLM judge", "TF-IDF judge"]),
    (label, ["--judge", "{j}/ens", *LABEL, "--shots", "1"], ["--shots", "LLM judge", "stacked ensemble"]),
    (label, ["--judge", "lora:" + TF, *LABEL], ["tf holds a tfidf judge, not lora", "tfidf:tf"]),
    (label, ["--judge", "ensemble:" + TF, *LABEL], ["holds a tfidf judge, not ensemble"]),
    (label, ["--judge", "{d}/forest", *LABEL], ["forest: judge.json kind must be", one_of(directory_kinds()), "retrain"]),
    (label, ["--judge", "tfidf", *LABEL], ["neither a judge directory", "KIND:DIR"]),
    # judge.train: a setting no kind of the run takes
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "ensemble", "--members", "tfidf", "rules", "--lora-r", "4"],
     ["--lora-r", "LoRA judge", "drop it for --kind ensemble"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "rules"], ["--kind", "invalid choice"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "ensemble", "--members", "tfidf", "ensemble"], ["--members", "invalid choice", "'ensemble'"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "ensemble", "--members", "tfidf", "llm"], ["--members", "invalid choice", "'llm'"]),
    # judge.annotate issues: the out-of-fold routine checks --cv-group for several annotators too (was a KeyError)
    (annotate, ["issues", G, "--annotators", "label_a", "label_b", "--cv-group", "nope", "--out", OUT_DIR], ["--cv-group column 'nope' not found", "columns present"]),
    (annotate, ["issues", G, "--cv-group", "nope", "--out", OUT_DIR], ["--cv-group column 'nope' not found"]),
    (annotate, ["issues", G, "--annotators", "label_a", "label_b", "--cv-group", "identity", "--folds", "3", "--out", OUT_DIR],
     ["--cv-group 'identity' has 2 values", "fewer than --folds 3"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"{m.__name__.split('.')[-1]}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_refused(module, argv, fragments, files, judges, tmp_path, capsys):
    argv = [a.format(d=files, t=tmp_path, j=judges) for a in argv]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)


def test_every_kind_spec_names_what_exists():
    """Each spec's dotted names resolve: its loader, its format's judge.json schema, its training (a
    Trainer that trains it when it is trainable, and fits it as a member when it may be one)."""
    import importlib

    from pydantic import BaseModel

    from training.kinds import Trainer

    assert list(KINDS) == [s.name for s in specs()]
    for spec in specs():
        assert isinstance(spec, KindSpec) and spec.title and dataclasses.is_dataclass(spec.options), spec.name
        assert callable(dotted(spec.load)), spec.name
        for key in ("precision_directory", "fingerprint"):
            assert getattr(spec, key) is None or callable(dotted(getattr(spec, key))), (spec.name, key)
        if spec.form == "directory":
            settings = importlib.import_module(spec.format).Settings
            assert issubclass(settings, BaseModel) and settings.model_fields["kind"].annotation.__args__ == (spec.name,), spec.name
        if spec.training is not None:
            trainer = dotted(spec.training)
            assert isinstance(trainer, Trainer), spec.name
            assert (trainer.train is not None) == spec.trainable and (trainer.train is None or callable(trainer.train)), spec.name
            assert not spec.member or callable(trainer.fit_member), spec.name
            assert callable(trainer.card_line) and trainer.title, spec.name


def test_a_misspelt_or_contradictory_spec_fails_at_import():
    @dataclasses.dataclass
    class Options:
        pass

    base = dict(name="centroid", title="the centroid judge", form="directory", options=Options, load="x.judge:load", format="x.format")
    KindSpec(**base)
    with pytest.raises(TypeError):
        KindSpec(**base, trainabel=True)  # a typo is an error, never a silent False
    for wrong in (dict(trainable=True), dict(form="path"), dict(load="x.judge.load"), dict(options=object), dict(format=None),
                  dict(default_member=True), dict(member=True, training="training.x:TRAINER"), dict(runs_engine=True)):
        with pytest.raises(ValueError):
            KindSpec(**{**base, **wrong})


def test_the_registry_and_every_spec_import_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, judge.kinds as k; [s.options for s in k.specs()]; "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'numpy', 'sklearn', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]", out.stdout


def test_every_kind_option_is_a_judge_label_flag():
    """Each kind's Options field is a judge.label setting and flag, so no option is silently dropped."""
    flags = {a.dest for a in label.build_parser()._actions}
    settings = {f.name for f in dataclasses.fields(label.Config)}
    for spec in specs():
        for f in dataclasses.fields(spec.options):
            if f.name == "engine_options":  # no flag of its own: every engine's flags fill it (judge.engines)
                assert f.name in settings and label.build_parser().parse_args(["--dtype", "float32"]).engine_options == {"dtype": "float32"}
            elif f.name not in ("max_length", "max_new_tokens"):  # library-only settings (benchmarks)
                assert f.name in flags and f.name in settings, (spec.name, f.name)


def test_every_kind_training_option_is_a_judge_train_flag_and_setting():
    """A kind's training options (Trainer.options) are judge.train flags and TrainConfig fields with their
    defaults, and only that kind takes them (--lora-r for --kind tfidf is refused, naming the LoRA judge)."""
    from training.build import TrainConfig
    from training.kinds import option_fields, trained_kinds, trainer

    flags = {a.dest: a for a in train.build_parser()._actions}
    settings = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert {f.name for f in option_fields()} >= {"base_model", "lora_r", "epochs", "device"}
    for f in option_fields():
        # the parser shows the field's default in the help (judge.core.config.parser_for), so compare the words before it
        words = f.metadata["help"].replace("%(default)s", str(f.default)).partition(" (default")[0]
        assert f.name in flags and flags[f.name].help.replace("%(default)s", str(f.default)).startswith(words), f.name
        assert settings[f.name].default == f.default and TrainConfig(train=["x"], out="y", kind="tfidf").__dict__[f.name] == f.default
    for kind in trained_kinds():
        assert set(trainer(kind).settings) <= set(settings), kind


def test_swap_reports_that_an_ensemble_masks_names(judges, tmp_path, capsys):
    # was False: EnsembleJudge has no mask_names attribute and judge.swap read that attribute
    assert masks_names(load_judge(str(judges / "ens"))) is True
    assert masks_names(load_judge("rules")) is False
    code, _, err = run_cli(swap, [str(SAMPLE), "--judge", str(judges / "ens"), "--sample", "12", "--no-progress", "--out", str(tmp_path / "s")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "s" / "swap.json").read_text())
    assert result["masks_names"] is True and result["overall"]["flips"] == 0


def test_label_fingerprints_a_directory_judge_through_its_kind(judges, tmp_path, capsys):
    code, _, err = run_cli(label, ["--judge", str(judges / "tf"), "--input", str(SAMPLE), "--prefix", "j_", "--no-progress",
                                   "--out", str(tmp_path / "l.jsonl")], capsys)
    assert code == 0, err
    identity = json.loads((tmp_path / "l.jsonl.manifest.json").read_text())["identity"]
    assert {"judge.json", "tfidf.safetensors", "taxonomy.yaml"} <= set(identity["judge"])


# -- the floors ------------------------------------------------------------------------------------

def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _python_files(*folders: str):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


# The floors, lowest first. Each room may import itself and the rooms listed for it, nothing else of
# the project's (tests, benchmarks and the commands at the top of judge/ may import anything).
FLOORS = {
    "judge/core": ("judge.core",),
    "judge/stats": ("judge.core", "judge.stats"),
    # render draws the analysis' typed results; it never imports a command
    "judge/render": ("judge.core", "judge.render", "judge.analysis"),
    "judge/run": ("judge.core", "judge.run"),
    "judge/engines": ("judge.core", "judge.engines"),
    "generation": ("judge.core", "judge.engines", "judge.run", "generation"),
    "judge/annotation": ("judge.core", "judge.stats", "judge.annotation"),
    # the analysis as a library (issue 29): records and explicit arguments in, typed results out
    "judge/analysis": ("judge.core", "judge.stats", "judge.annotation", "judge.analysis"),
    "judge/kinds": ("judge.core", "judge.engines", "judge.run", "judge.kinds"),
    # training writes through a kind's on-disk format (its folder's format, precision record, forward
    # patch, keywords) and judge_dir, and reads the kinds' specs (judge.kinds.registry: names and the
    # dotted names of their trainings), never through the judge that labels (judge.kinds.K.judge) or
    # the registry's loading (judge.kinds), so inference and training stay apart; its model card is
    # rendered by judge.render.
    "training": ("judge.core", "judge.engines", "judge.render", "judge.kinds.judge_dir", "judge.kinds.registry", "judge.kinds.spec",
                 "judge.kinds.*.format", "judge.kinds.lora.precision", "judge.kinds.lora.forward", "judge.kinds.rules.keywords",
                 "training"),
}
PROJECT = ("judge", "training", "generation")


def _first_party(module: str) -> bool:
    return module.split(".")[0] in PROJECT


def _allowed(module: str, rooms: tuple[str, ...]) -> bool:
    # `from judge.kinds.lora import format` names the package; the module it brings is checked by name below.
    # A room with a * matches one name there: judge.kinds.*.format is every kind's format, and nothing else of the kind.
    return any(re.fullmatch(re.escape(r).replace(r"\*", r"[a-z0-9_]+"), module) if "*" in r else module == r or module.startswith(r + ".")
               for r in rooms)


def _imports(path: Path) -> set[str]:
    """Modules a file imports, with `from PKG import SUB` counted as PKG.SUB when SUB is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            package = ROOT / node.module.replace(".", "/")
            subs = [f"{node.module}.{a.name}" for a in node.names if (package / f"{a.name}.py").exists()
                    or (package / a.name).is_dir()]
            names |= set(subs) if subs and len(subs) == len(node.names) else {node.module}
    return names


@pytest.mark.parametrize("room", list(FLOORS))
def test_each_room_imports_only_the_floors_below_it(room):
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in _python_files(room)
                 for m in _imports(p) if _first_party(m) and not _allowed(m, FLOORS[room])]
    assert not offenders, offenders


def test_the_core_has_no_import_circle_and_defers_only_heavy_packages():
    graph = {}
    for path in _python_files("judge/core"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {m for m in _imports(path) if m.startswith("judge.core") and m != module}
    # depth-first search for a back edge
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join(trail + [nxt])}"
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    deferred = set()
    for path in _python_files("judge/core"):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        deferred |= {a.name.split(".")[0] for a in node.names}
                    elif isinstance(node, ast.ImportFrom):
                        deferred.add(node.module.split(".")[0])
    # torch (devices), pydantic and safetensors (schema), pyarrow (records: a Parquet file's column count) are
    # imported only when a check needs them
    assert deferred <= {"torch", "pydantic", "safetensors", "pyarrow"}, deferred


def test_training_may_import_a_kinds_format_never_its_judge():
    rooms = FLOORS["training"]
    assert _allowed("judge.kinds.tfidf.format", rooms) and _allowed("judge.kinds.majority.format", rooms)
    assert not any(_allowed(m, rooms) for m in ("judge.kinds.tfidf.judge", "judge.kinds", "judge.kinds.base", "judge.kinds.tfidf",
                                                "judge.kinds.x.format.judge", "judge.kinds.a.b.format"))


def test_the_floor_check_sees_function_level_imports(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    from training.lora import load_base\n    import training.cv\n")
    assert {"training.lora", "training.cv"} <= imported_modules(tmp_path / "m.py")


# -- one atomic-directory helper -------------------------------------------------------------------

def test_replacing_a_directory_never_moves_the_old_one_away_first(tmp_path, monkeypatch):
    from judge.core import files as directories
    from judge.core.outputs import staged_directory

    if directories._renameat2() is None:
        pytest.skip("no renameat2 here: the two-rename fallback is used")
    out = tmp_path / "report"
    with staged_directory(out, overwrite=False) as staging:
        (staging / "a.txt").write_text("old")
    real = os.replace

    def no_gap(src, dst, *args, **kwargs):  # the old code renamed ``out`` aside, leaving no ``out`` for a moment
        assert Path(src) != out, "the directory was moved away before its replacement was in place"
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", no_gap)
    with staged_directory(out, overwrite=True) as staging:
        (staging / "b.txt").write_text("new")
    assert (out / "b.txt").read_text() == "new"
    assert not (out / "a.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # neither the staging folder nor the old one is left


def test_a_cache_built_twice_keeps_the_first_copy(tmp_path):
    from judge.core.files import build_aside

    target = tmp_path / "cache" / "model"
    with build_aside(target) as tmp:
        (tmp / "config.json").write_text("first")
    with build_aside(target) as tmp:  # a second process that lost the race
        (tmp / "config.json").write_text("second")
    assert (target / "config.json").read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["model"]
    with pytest.raises(RuntimeError):
        with build_aside(tmp_path / "cache" / "other") as tmp:
            raise RuntimeError("training crashed")
    assert [p.name for p in target.parent.iterdir()] == ["model"]
