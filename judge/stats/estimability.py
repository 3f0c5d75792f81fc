"""When a group's rate is estimable: one rule, fixed before any coverage was measured (issue 19).

A rate is reported as an estimate only when the group has

- at least ``MIN_LABELS`` = 5 labels (human labels for the human-only and PPI rates; scored outputs
  for a rate computed from the labels themselves), and
- when outputs are clustered (``--cluster``, by default the prompt when it repeats), those labels
  come from at least ``MIN_CLUSTERS`` = 5 distinct clusters.

Both say the same thing: the interval's variance is estimated with at least 4 degrees of freedom
(n - 1 without clusters, G - 1 with them), so its Student-t quantile is at most 2.78 and the
variance estimate is not itself a guess from two or three numbers. Below that a variance estimated
from the group carries almost no information about the spread (with 2 df the estimate's coefficient
of variation is 100%), however wide the quantile.

The rule counts labels and clusters, never outcomes. A threshold on events (positive labels) would
condition on the data: it would hide exactly the groups whose rate is low, and coverage measured on
the groups it keeps would be coverage of a selected set. Groups with no events stay honest another
way: their intervals cannot collapse to zero width (human only: Korn-Graubard, i.e. Clopper-Pearson
on the design's effective sample size; PPI: half a pseudo-disagreement each way, Agresti-Min), so a
0-of-6 group reads 0.000 [0.000, 0.459], not [0.000, 0.000].

A group below the rule is never dropped: it stays in every table and figure, marked not estimable
with the reason, its numbers kept in the JSON beside ``estimable: false``, and a warning on stderr.
"""

from __future__ import annotations

MIN_LABELS = 5
MIN_CLUSTERS = 5

RULE = (
    f"a rate is estimable with at least {MIN_LABELS} labels in the group and, when outputs are clustered, "
    f"at least {MIN_CLUSTERS} distinct clusters among them (a variance with at least {MIN_LABELS - 1} degrees of "
    "freedom); "
    "decided from counts only, never from the outcomes"
)


def check(n_labels: int, n_clusters: int | None = None, *, what: str = "labels") -> str | None:
    """None when the rule holds; otherwise the reason, for the table and the warning.

    ``n_clusters`` is None when outputs are not clustered.
    """
    if n_labels < MIN_LABELS:
        return f"{n_labels} {what} (the rule needs {MIN_LABELS})"
    if n_clusters is not None and n_clusters < MIN_CLUSTERS:
        return f"{n_labels} {what} from only {n_clusters} clusters (the rule needs {MIN_CLUSTERS})"
    return None
