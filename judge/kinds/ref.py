"""A ``--judge`` spec resolved once for a run (``judge.kinds.resolve``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from judge.kinds.judge_dir import Digest, known_digests


@dataclass(frozen=True)
class JudgeRef:
    """What a spec names, resolved once: a run loads the judge from it (``judge.kinds.load_judge``, and each Ray
    actor through a ``JudgeWorker``), chooses its precision, and records its fingerprint in the manifest's identity.

    A trained judge's directory is checked (``judge_dir.verify``) and each of its files hashed when it is resolved;
    the checks that follow in the run (and on a Ray actor) take those digests (``known``) instead of hashing a
    file again, as long as the file is unchanged."""

    spec: str  # as given: messages name it
    kind: str
    arg: str  # the kind's argument: its directory, a model, or ""
    directory: Path | None = None  # a trained judge's directory; None for the kinds named alone (rules, llm)
    # what a rerun must match (the kind's ``fingerprint``)
    fingerprint: dict[str, str] = field(default_factory=dict, compare=False)
    digests: tuple[Digest, ...] = field(default=(), repr=False)  # every file of the directory, as it was hashed

    def known(self):
        """A block within which the checks of this judge's files take the digests found when it was resolved."""
        return known_digests(self.digests)
