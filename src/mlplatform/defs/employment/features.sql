-- employment features: one row per person surveyed in the period (a survey year).
--
-- The platform runs this for one period at a time and lets it see only:
--   current_people   the period's clean rows
--   history_people   clean rows of the features.lookback_periods years before it
-- so a rate computed here can only come from earlier years (point in time), whoever edits this file.
-- $smoothing comes from defs.yaml (features.params). The platform adds the `period` column.
--
-- Label: is_employed is true when the person is employed (employed = 1).
--
-- age_band is the lower bound of a five-year band, 75 for everyone 75 or older; the same expression is
-- used for history and for the current year, so a person falls in the band the rates were counted in.
WITH history AS (
    SELECT CAST(least(floor(AGEP / 5) * 5, 75) AS BIGINT) AS age_band, SCHL, CAST(employed AS DOUBLE) AS employed
    FROM history_people
),
-- The overall rate of the earlier years: NULL when there is no history at all (the first year), which
-- makes every rate below NULL too.
prior AS (SELECT avg(employed) AS rate FROM history),
by_age_schl AS (SELECT age_band, SCHL, count(*) AS people, sum(employed) AS employed FROM history GROUP BY ALL),
people AS (
    SELECT *, CAST(least(floor(AGEP / 5) * 5, 75) AS BIGINT) AS age_band
    FROM current_people
)
SELECT
    p.id,
    p.AGEP, p.SCHL, p.MAR, p.RELP, p.DIS, p.ESP, p.CIT, p.MIG, p.MIL, p.ANC, p.NATIVITY,
    p.DEAR, p.DEYE, p.DREM, p.SEX, p.RAC1P,
    p.age_band,
    -- The employment rate of people of the same age band and educational attainment in earlier years,
    -- pulled towards the overall rate by $smoothing pseudo-people (a cell seen rarely or never: the prior).
    (coalesce(by_age_schl.employed, 0) + $smoothing * prior.rate)
        / (coalesce(by_age_schl.people, 0) + $smoothing) AS age_schl_employment_rate,
    p.employed = 1 AS is_employed
FROM people AS p
CROSS JOIN prior
LEFT JOIN by_age_schl ON by_age_schl.age_band = p.age_band AND by_age_schl.SCHL = p.SCHL
