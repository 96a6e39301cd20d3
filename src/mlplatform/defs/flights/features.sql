-- flights features: one row per scheduled flight of the period.
--
-- The platform runs this for one period at a time and lets it see only:
--   current_flights, current_weather   the period's clean rows
--   history_flights, history_weather   clean rows of the features.lookback_periods periods before it
--   airlines, airports, planes         the reference tables
-- so a rate computed here can only come from earlier months (point in time), whoever edits this file.
-- $smoothing_flights and $delay_threshold_minutes come from defs.yaml (features.params); $period_start is
-- the first day of the period. The platform adds the `period` column.
--
-- Label: is_delayed is true when the flight left more than the threshold late. A cancelled flight keeps its
-- row with is_cancelled = true and is_delayed = NULL: scored like any flight, but no example either way, and
-- not counted in historical rates.
WITH history AS (
    SELECT carrier, origin, dest, hour, (dep_delay > $delay_threshold_minutes)::DOUBLE AS delayed
    FROM history_flights
    WHERE dep_delay IS NOT NULL
),
prior AS (SELECT avg(delayed) AS rate FROM history),
by_carrier AS (SELECT carrier, count(*) AS flights, sum(delayed) AS delayed FROM history GROUP BY ALL),
by_route AS (SELECT origin, dest, count(*) AS flights, sum(delayed) AS delayed FROM history GROUP BY ALL),
by_origin_hour AS (SELECT origin, hour, count(*) AS flights, sum(delayed) AS delayed FROM history GROUP BY ALL),
flights AS (SELECT *, make_date(year, month, day) AS flight_date FROM current_flights),
-- US federal holidays of the years around the period (not shifted to observed days: travel peaks on the day).
days AS (
    SELECT d::DATE AS day
    FROM generate_series(
        make_date(year($period_start) - 1, 1, 1), make_date(year($period_start) + 1, 12, 31), INTERVAL 1 DAY
    ) AS t(d)
),
holidays AS (
    SELECT day AS holiday FROM days
    WHERE (month(day), day(day)) IN ((1, 1), (7, 4), (11, 11), (12, 25))
       OR (isodow(day) = 1 AND month(day) IN (1, 2) AND day(day) BETWEEN 15 AND 21)  -- MLK, Presidents' Day
       OR (isodow(day) = 1 AND month(day) = 5 AND day(day) >= 25)  -- Memorial Day
       OR (isodow(day) = 1 AND month(day) = 9 AND day(day) <= 7)  -- Labor Day
       OR (isodow(day) = 1 AND month(day) = 10 AND day(day) BETWEEN 8 AND 14)  -- Columbus Day
       OR (isodow(day) = 4 AND month(day) = 11 AND day(day) BETWEEN 22 AND 28)  -- Thanksgiving
),
dates AS (
    SELECT d.flight_date, min(abs(date_diff('day', d.flight_date, h.holiday))) AS days_to_holiday
    FROM (SELECT DISTINCT flight_date FROM flights) AS d CROSS JOIN holidays AS h
    GROUP BY d.flight_date
)
SELECT
    f.year, f.month, f.day, f.carrier, f.flight, f.origin, f.sched_dep_time,
    f.hour AS sched_hour,
    f.hour * 60 + f.minute AS sched_dep_minute,
    isodow(f.flight_date) AS weekday,
    dates.days_to_holiday = 0 AS is_holiday,
    dates.days_to_holiday,
    f.distance,
    f.dest,
    f.year - planes.year AS plane_age,
    w.temp, w.dewp, w.humid, w.wind_speed, w.wind_gust, w.precip, w.pressure, w.visib,
    (coalesce(by_carrier.delayed, 0) + $smoothing_flights * prior.rate)
        / (coalesce(by_carrier.flights, 0) + $smoothing_flights) AS carrier_delay_rate,
    (coalesce(by_route.delayed, 0) + $smoothing_flights * prior.rate)
        / (coalesce(by_route.flights, 0) + $smoothing_flights) AS route_delay_rate,
    (coalesce(by_origin_hour.delayed, 0) + $smoothing_flights * prior.rate)
        / (coalesce(by_origin_hour.flights, 0) + $smoothing_flights) AS origin_hour_delay_rate,
    f.dep_time IS NULL AS is_cancelled,
    f.dep_delay > $delay_threshold_minutes AS is_delayed
FROM flights AS f
CROSS JOIN prior
JOIN dates USING (flight_date)
LEFT JOIN planes USING (tailnum)
LEFT JOIN current_weather AS w ON w.origin = f.origin AND w.time_hour = f.time_hour
LEFT JOIN by_carrier ON by_carrier.carrier = f.carrier
LEFT JOIN by_route ON by_route.origin = f.origin AND by_route.dest = f.dest
LEFT JOIN by_origin_hour ON by_origin_hour.origin = f.origin AND by_origin_hour.hour = f.hour
