"""One multiplicity default for a table of comparisons (issue 19).

A table of 18 groups x 3 categories of gaps with a 95% interval each holds, under no difference at
all, about 2.7 intervals that exclude 0 by chance. When a table has more than ``ADJUST_ABOVE`` = 5
comparisons its intervals are simultaneous (Bonferroni: each at 1 - alpha / m, so all m cover
together with probability at least 1 - alpha) and its p-values Holm-adjusted (Holm 1979: the same
family-wise error rate, uniformly more powerful than Bonferroni; statsmodels' ``multipletests``).
Holm rejects everything whose Bonferroni interval excludes 0, and may reject a few more. ``--no-adjust``
gives marginal intervals and raw p-values; the table says which it shows.
"""

from __future__ import annotations

from dataclasses import dataclass

ADJUST_ABOVE = 5


@dataclass(frozen=True)
class Family:
    """How one table's comparisons are adjusted."""

    m: int
    adjusted: bool
    alpha: float = 0.05

    @classmethod
    def of(cls, m: int, *, enabled: bool = True, alpha: float = 0.05) -> "Family":
        return cls(m=m, adjusted=enabled and m > ADJUST_ABOVE, alpha=alpha)

    @property
    def interval_alpha(self) -> float:
        """The level each interval is computed at: alpha / m when adjusted (Bonferroni)."""
        return self.alpha / self.m if self.adjusted else self.alpha

    def describe(self, *, p_values: bool = True) -> str:
        level = int(round(100 * (1 - self.alpha)))
        if self.adjusted:
            return (
                f"{level}% simultaneous intervals over the table's m = {self.m} comparisons (Bonferroni: each at "
                f"{100 * (1 - self.interval_alpha):.2f}%)"
                + (", p-values Holm-adjusted" if p_values else "")
                + "; --no-adjust for marginal ones"
            )
        why = "--no-adjust" if self.m > ADJUST_ABOVE else f"m = {self.m} comparisons, at most {ADJUST_ABOVE}"
        return f"{level}% marginal intervals" + (" and unadjusted p-values" if p_values else "") + f" ({why})"

    def as_dict(self, *, p_values: bool = True) -> dict:
        out = {
            "m": self.m,
            "adjusted": self.adjusted,
            "intervals": "Bonferroni simultaneous" if self.adjusted else "marginal",
            "interval_alpha": self.interval_alpha,
            "note": self.describe(p_values=p_values),
        }
        if p_values:
            out["p_values"] = "Holm" if self.adjusted else "unadjusted"
        return out

    def adjust_p(self, p_values: list[float]) -> list[float]:
        if not self.adjusted or not p_values:
            return list(p_values)
        from statsmodels.stats.multitest import multipletests

        return [float(p) for p in multipletests(p_values, alpha=self.alpha, method="holm")[1]]
