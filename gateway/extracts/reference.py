"""Reference tables for the synthetic London population.

Figures are rounded approximations of public ONS 2021 census and IMD 2019 patterns, good
enough to give the synthetic data a realistic shape. They are not statistics to cite.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Borough:
    name: str
    population_k: int  # usual residents, thousands (rounded)
    mean_imd_decile: float  # 1 = most deprived tenth of England
    districts: tuple[str, ...]  # postcode districts mostly within the borough
    practice_prefix: str  # ODS-style prefix for the area's GP practice codes


BOROUGHS: tuple[Borough, ...] = (
    Borough("Barking and Dagenham", 219, 2.6, ("IG11", "RM8", "RM9", "RM10"), "F82"),
    Borough("Barnet", 389, 6.2, ("N3", "N11", "N12", "N20", "NW4", "NW7", "NW9", "EN5"), "F85"),
    Borough("Bexley", 246, 6.3, ("DA5", "DA6", "DA7", "DA14", "DA15", "DA16", "SE2"), "G83"),
    Borough("Brent", 339, 4.1, ("NW2", "NW6", "NW10", "HA0", "HA9"), "E84"),
    Borough("Bromley", 330, 7.2, ("BR1", "BR2", "BR3", "BR5", "BR6", "BR7"), "G84"),
    Borough("Camden", 210, 5.0, ("NW1", "NW3", "NW5", "WC1"), "F83"),
    Borough("City of London", 9, 7.5, ("EC1", "EC2", "EC3", "EC4"), "F84"),
    Borough("Croydon", 391, 4.9, ("CR0", "CR2", "CR7", "SE25"), "H83"),
    Borough("Ealing", 367, 4.9, ("W5", "W7", "W13", "UB1", "UB6"), "E85"),
    Borough("Enfield", 330, 4.2, ("EN1", "EN2", "EN3", "N9", "N13", "N18"), "F86"),
    Borough("Greenwich", 289, 4.2, ("SE3", "SE7", "SE9", "SE10", "SE18", "SE28"), "G85"),
    Borough("Hackney", 259, 2.9, ("E2", "E5", "E8", "E9", "N16"), "F84"),
    Borough("Hammersmith and Fulham", 183, 5.0, ("W6", "W12", "W14", "SW6"), "E86"),
    Borough("Haringey", 264, 3.8, ("N4", "N8", "N15", "N17", "N22"), "F85"),
    Borough("Harrow", 261, 6.4, ("HA1", "HA2", "HA3", "HA5"), "E84"),
    Borough("Havering", 262, 6.3, ("RM1", "RM3", "RM7", "RM11", "RM12"), "F82"),
    Borough("Hillingdon", 306, 5.8, ("UB3", "UB4", "UB8", "UB10", "HA4"), "E86"),
    Borough("Hounslow", 288, 5.0, ("TW3", "TW4", "TW5", "TW7", "W4"), "E85"),
    Borough("Islington", 217, 3.6, ("N1", "N5", "N7", "N19"), "F83"),
    Borough("Kensington and Chelsea", 143, 5.8, ("SW3", "SW5", "SW10", "W8", "W10", "W11"), "E87"),
    Borough("Kingston upon Thames", 168, 7.4, ("KT1", "KT2", "KT3", "KT6", "KT9"), "H84"),
    Borough("Lambeth", 317, 3.9, ("SW2", "SW4", "SW9", "SE11", "SE27"), "G85"),
    Borough("Lewisham", 301, 3.7, ("SE4", "SE6", "SE13", "SE14", "SE23"), "G84"),
    Borough("Merton", 215, 6.4, ("SW19", "SW20", "CR4", "SM4"), "H85"),
    Borough("Newham", 351, 2.8, ("E6", "E7", "E12", "E13", "E15", "E16"), "F84"),
    Borough("Redbridge", 310, 5.2, ("IG1", "IG2", "IG3", "IG4", "IG5", "IG6", "E18"), "F82"),
    Borough("Richmond upon Thames", 195, 8.4, ("TW1", "TW2", "TW9", "TW10", "SW13", "SW14"), "H84"),
    Borough("Southwark", 307, 3.8, ("SE1", "SE5", "SE15", "SE16", "SE17", "SE22"), "G85"),
    Borough("Sutton", 209, 7.0, ("SM1", "SM2", "SM3", "SM5"), "H85"),
    Borough("Tower Hamlets", 310, 2.7, ("E1", "E3", "E14"), "F84"),
    Borough("Waltham Forest", 278, 4.1, ("E4", "E10", "E11", "E17"), "F86"),
    Borough("Wandsworth", 328, 6.3, ("SW11", "SW12", "SW15", "SW17", "SW18"), "H85"),
    Borough("Westminster", 205, 5.2, ("W1", "W2", "W9", "SW1", "NW8"), "E87"),
)

BOROUGH_NAMES: tuple[str, ...] = tuple(b.name for b in BOROUGHS)

# ONS 2021 ethnic group classification (19 categories) and a rounded London-wide share (%).
ETHNICITIES: tuple[tuple[str, float], ...] = (
    ("Asian: Bangladeshi", 3.7),
    ("Asian: Chinese", 1.7),
    ("Asian: Indian", 7.5),
    ("Asian: Pakistani", 3.3),
    ("Asian: Other Asian", 4.6),
    ("Black: African", 7.9),
    ("Black: Caribbean", 3.9),
    ("Black: Other Black", 1.6),
    ("Mixed: White and Asian", 1.2),
    ("Mixed: White and Black African", 0.9),
    ("Mixed: White and Black Caribbean", 1.5),
    ("Mixed: Other Mixed or Multiple", 2.2),
    ("White: English, Welsh, Scottish, Northern Irish or British", 36.8),
    ("White: Irish", 1.8),
    ("White: Gypsy or Irish Traveller", 0.1),
    ("White: Roma", 0.4),
    ("White: Other White", 14.7),
    ("Other: Arab", 1.6),
    ("Other: Any other ethnic group", 4.7),
)
ETHNICITY_NAMES: tuple[str, ...] = tuple(e for e, _ in ETHNICITIES)
SOUTH_ASIAN: frozenset[str] = frozenset(
    {"Asian: Bangladeshi", "Asian: Indian", "Asian: Pakistani", "Asian: Other Asian"}
)
BLACK: frozenset[str] = frozenset({"Black: African", "Black: Caribbean", "Black: Other Black"})
WHITE_BRITISH = "White: English, Welsh, Scottish, Northern Irish or British"

# Borough-specific multipliers on the London-wide ethnicity shares, so that local
# populations differ the way they visibly do (e.g. Tower Hamlets, Harrow, Havering).
ETHNICITY_TILTS: dict[str, dict[str, float]] = {
    "Tower Hamlets": {"Asian: Bangladeshi": 8.0, WHITE_BRITISH: 0.6},
    "Newham": {
        "Asian: Bangladeshi": 2.5,
        "Asian: Indian": 1.8,
        "Asian: Pakistani": 2.0,
        "Black: African": 1.6,
        WHITE_BRITISH: 0.4,
    },
    "Redbridge": {"Asian: Indian": 2.0, "Asian: Pakistani": 3.0, WHITE_BRITISH: 0.8},
    "Harrow": {"Asian: Indian": 3.5, "Asian: Other Asian": 2.0, WHITE_BRITISH: 0.7},
    "Brent": {"Asian: Indian": 2.5, "Black: Caribbean": 1.5, "White: Other White": 1.3, WHITE_BRITISH: 0.5},
    "Ealing": {"Asian: Indian": 2.0, "Asian: Pakistani": 1.5, "White: Other White": 1.4},
    "Hounslow": {"Asian: Indian": 2.3, "Asian: Pakistani": 1.8},
    "Southwark": {"Black: African": 2.2, "Black: Caribbean": 1.3},
    "Lambeth": {"Black: African": 1.5, "Black: Caribbean": 2.0},
    "Lewisham": {"Black: African": 1.6, "Black: Caribbean": 2.2},
    "Croydon": {"Black: African": 1.3, "Black: Caribbean": 2.0},
    "Greenwich": {"Black: African": 1.9},
    "Barking and Dagenham": {"Black: African": 2.3, "Asian: Bangladeshi": 1.5},
    "Enfield": {"White: Other White": 1.6, "Black: African": 1.3},
    "Haringey": {"White: Other White": 1.7, "Black: Caribbean": 1.4},
    "Kensington and Chelsea": {"Other: Arab": 3.0, "White: Other White": 1.6, "Asian: Chinese": 1.2},
    "Westminster": {"Other: Arab": 3.5, "White: Other White": 1.5},
    "Havering": {WHITE_BRITISH: 1.9},
    "Bexley": {WHITE_BRITISH: 1.9},
    "Bromley": {WHITE_BRITISH: 1.9},
    "Sutton": {WHITE_BRITISH: 1.7},
    "Richmond upon Thames": {WHITE_BRITISH: 1.6, "White: Other White": 1.2},
    "Kingston upon Thames": {WHITE_BRITISH: 1.4, "Asian: Other Asian": 1.5},
}

# Share of residents by five-year age band 0-4 ... 85-89, then 90+ (rounded London 2021).
AGE_BAND_SHARES: tuple[float, ...] = (
    6.4,
    6.3,
    6.0,
    5.4,
    6.4,
    8.6,
    9.4,
    8.6,
    7.6,
    6.7,
    6.4,
    5.7,
    4.5,
    3.5,
    3.0,
    2.2,
    1.5,
    0.9,
    0.5,
)
