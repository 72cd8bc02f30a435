"""The one object holding every disclosure-control parameter.

Defaults are ACRO's (1.0.2 ``default.yaml``) so an output checked here and in ACRO is judged
against the same numbers. A TRE changes them in one place (the gateway's validated config file)
and both the automatic checks and the researchers' notebooks pick them up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class SDCConfig:
    """Thresholds for the rules; see docs/disclosure-control.md for each boundary.

    threshold: a cell, statistic or bin needs at least this many contributors (10 passes, 9 fails).
    dof_threshold: models and dispersion statistics need residual degrees of freedom of at least
        this (10 passes, 9 fails).
    nk_n, nk_k: a cell fails when its ``nk_n`` largest contributions are MORE than ``nk_k`` of the
        cell total (exactly ``nk_k`` passes).
    p_ratio: a cell fails when the total less its two largest contributions is LESS than
        ``p_ratio`` times the largest (exactly ``p_ratio`` passes).
    zeros_are_disclosive: a zero in a frequency table reveals that nobody in that class has the
        attribute (class disclosure).
    check_missing_values: send cells whose statistic ignored missing values to review.
    survival_threshold: least number at risk and least number of events per Kaplan-Meier step.
    round_base: default base for ``Output.rounded``.
    """

    threshold: int = 10
    dof_threshold: int = 10
    nk_n: int = 2
    nk_k: float = 0.9
    p_ratio: float = 0.1
    zeros_are_disclosive: bool = True
    check_missing_values: bool = False
    survival_threshold: int = 10
    round_base: int = 5

    def __post_init__(self) -> None:
        for name in ("threshold", "dof_threshold", "nk_n", "survival_threshold", "round_base"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("nk_k", "p_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
        for name in ("zeros_are_disclosive", "check_missing_values"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SDCConfig:
        """Build from a config file section, refusing unknown keys so a typo cannot weaken a rule."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown SDC parameters: {sorted(unknown)}")
        return cls(**dict(values))

    @classmethod
    def from_acro(cls, acro_config: Mapping[str, Any]) -> SDCConfig:
        """Translate an ACRO ``config.json``/``default.yaml`` mapping (other keys are ignored)."""
        names = {
            "safe_threshold": "threshold",
            "safe_dof_threshold": "dof_threshold",
            "safe_nk_n": "nk_n",
            "safe_nk_k": "nk_k",
            "safe_pratio_p": "p_ratio",
            "zeros_are_disclosive": "zeros_are_disclosive",
            "check_missing_values": "check_missing_values",
            "survival_safe_threshold": "survival_threshold",
            "safe_round_base": "round_base",
        }
        return cls(**{ours: acro_config[theirs] for theirs, ours in names.items() if theirs in acro_config})

    def to_acro(self) -> dict[str, Any]:
        """The same parameters under ACRO's key names, for ``config.json`` beside ``results.json``."""
        return {
            "safe_threshold": self.threshold,
            "safe_dof_threshold": self.dof_threshold,
            "safe_nk_n": self.nk_n,
            "safe_nk_k": self.nk_k,
            "safe_pratio_p": self.p_ratio,
            "check_missing_values": self.check_missing_values,
            "survival_safe_threshold": self.survival_threshold,
            "zeros_are_disclosive": self.zeros_are_disclosive,
            "safe_round_base": self.round_base,
        }


DEFAULT_CONFIG = SDCConfig()
