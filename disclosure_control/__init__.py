"""Statistical disclosure control for outputs leaving the secure environment.

A pure library (pandas, numpy, scipy, statsmodels, opendp): the gateway's output checker and the
researchers' notebooks import the same functions, so a pre-check in a notebook applies exactly
the rules the checker will.
"""

from .acro_format import AcroResult, read_acro_document, read_acro_results, write_acro_results
from .config import DEFAULT_CONFIG, SDCConfig
from .differencing import DifferencingReport, check_differencing
from .dp import BudgetExceeded, DPResult, PrivacyBudget, dp_count, dp_histogram, dp_mean, dp_sum
from .models import logit, ols, probit
from .output import Output
from .record import PublicRecord, Record
from .rules import RULES
from .summaries import describe, hist
from .survival import survival
from .tables import crosstab, pivot_table
from .version import __version__

__all__ = [
    "DEFAULT_CONFIG",
    "RULES",
    "AcroResult",
    "BudgetExceeded",
    "DPResult",
    "DifferencingReport",
    "Output",
    "PrivacyBudget",
    "PublicRecord",
    "Record",
    "SDCConfig",
    "__version__",
    "check_differencing",
    "crosstab",
    "describe",
    "dp_count",
    "dp_histogram",
    "dp_mean",
    "dp_sum",
    "hist",
    "logit",
    "ols",
    "pivot_table",
    "probit",
    "read_acro_document",
    "read_acro_results",
    "survival",
    "write_acro_results",
]
