"""What an application asks its extract to be: the cohort and how quasi-identifiers are generalised.

The domain owns these terms (an application stores them, the DAC approves them); gateway.extracts.spec builds the
extract specification from them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Cohort(BaseModel):
    """Who is in the extract. Every criterion that is set must hold; unset ones select everyone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    boroughs: list[str] | None = None
    age_min: int | None = Field(default=None, ge=0, le=130)  # age on the last day of the date range
    age_max: int | None = Field(default=None, ge=0, le=130)
    conditions: list[str] = Field(default_factory=list)  # condition names or codes, any of them

    @model_validator(mode="after")
    def _ordered(self) -> Cohort:
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise ValueError("age_min is above age_max")
        if self.boroughs is not None and not self.boroughs:
            raise ValueError("boroughs, when given, names at least one borough")
        return self


class DateOfBirthTreatment(StrEnum):
    YEAR = "year"
    MONTH = "month"
    AGE_BAND = "age_band"


class EventDateTreatment(StrEnum):
    MONTH = "month"  # first day of the month
    SHIFT = "shift"  # moved by a per-patient offset, keeping order and intervals


class LsoaTreatment(StrEnum):
    BOROUGH = "borough"
    KEEP = "keep"


class AreaCodeTreatment(StrEnum):
    KEEP = "keep"
    POSTCODE_AREA = "postcode_area"  # SE15 -> SE


class ImdTreatment(StrEnum):
    KEEP = "keep"
    QUINTILE = "quintile"


class Generalisation(BaseModel):
    """How approved quasi-identifiers are coarsened. Defaults are the cautious choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    date_of_birth: DateOfBirthTreatment = DateOfBirthTreatment.YEAR
    age_band_years: Literal[5, 10] = 5
    event_dates: EventDateTreatment = EventDateTreatment.MONTH
    lsoa: LsoaTreatment = LsoaTreatment.BOROUGH
    area_code: AreaCodeTreatment = AreaCodeTreatment.KEEP
    imd_decile: ImdTreatment = ImdTreatment.KEEP


# Each dimension of the generalisation, finest level first, with the words people read for it (one mapping).
LEVELS: dict[str, list[tuple[dict[str, Any], str]]] = {
    "date_of_birth": [({"date_of_birth": "month"}, "month of birth"),
                      ({"date_of_birth": "year"}, "year of birth"),
                      ({"date_of_birth": "age_band", "age_band_years": 5}, "age in 5-year bands"),
                      ({"date_of_birth": "age_band", "age_band_years": 10}, "age in 10-year bands")],
    "lsoa": [({"lsoa": "keep"}, "LSOA as recorded"), ({"lsoa": "borough"}, "LSOA coarsened to its borough")],
    "area_code": [({"area_code": "keep"}, "postcode district"), ({"area_code": "postcode_area"}, "postcode area")],
    "imd_decile": [({"imd_decile": "keep"}, "IMD decile"), ({"imd_decile": "quintile"}, "IMD quintile")],
}


def level_of(generalisation: Generalisation, dimension: str) -> int:
    values = generalisation.model_dump(mode="json")
    for index, (setting, _) in enumerate(LEVELS[dimension]):
        if all(values.get(k) == v for k, v in setting.items()):
            return index
    return 0
