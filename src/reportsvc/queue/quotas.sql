-- Model quotas shared by every worker (migration 0007). Only `reportsvc.queue.quotas`
-- runs these. Each model's row holds its limits (requests and tokens per minute) and, for
-- each, a theoretical arrival time (GCRA): the moment the bucket will have caught up with
-- everything granted. A call may start once both are at most now and no pause is on; a
-- grant moves them on by one request and by the tokens booked. So calls of the whole
-- cluster are spread evenly over each second, not sent in bursts the provider refuses.


-- name: configure_quota
-- $1 model, $2 requests per minute (or NULL), $3 tokens per minute (or NULL). From
-- MODEL_RATE_LIMITS, at worker start-up.
INSERT INTO model_quotas AS q (model, rpm, tpm, source, learned)
VALUES ($1, $2::float8, $3::float8, 'configured', true)
ON CONFLICT (model) DO UPDATE
SET rpm = excluded.rpm, tpm = excluded.tpm, source = 'configured', learned = true,
    learning_until = NULL, updated_at = now();


-- name: unconfigure_quotas
-- $1 models configured now. A model no longer in MODEL_RATE_LIMITS learns its limits from
-- the provider's headers again.
UPDATE model_quotas
SET source = 'headers', rpm = NULL, tpm = NULL, learned = false, learning_until = NULL,
    updated_at = now()
WHERE source = 'configured' AND model <> ALL($1::text[]);


-- name: add_model
-- $1 model. A model seen for the first time: its limits are still to be learned.
INSERT INTO model_quotas (model, source) VALUES ($1, 'headers')
ON CONFLICT (model) DO NOTHING;


-- name: take_quota
-- $1 model; $2 the tokens each call asking books (an array, in the order of asking; empty
-- when only settling); $3 horizon (s): grant only a start within it; $4 the share of the
-- limits used (headroom against the provider's own clock); $5 how long a call learning the
-- limits may take before another one tries (s). The settlement of the answers since the
-- last statement: $6 how many there were, $7 tokens the provider counted minus tokens
-- booked, summed; $8..$13 what the latest headers said: requests limit, remaining,
-- seconds to reset; tokens limit, remaining, seconds to reset (each NULL when absent).
-- $14 how many calls to book ahead after those asking (0: none), $15 the tokens each books.
--
-- One statement, one round trip, for every call of a worker asking at once (a worker
-- gathers them while its previous statement is under way), and the settlement of those
-- that were answered meanwhile. Settling gives back (or books) the difference between
-- the tokens booked and those counted, learns the limits from the headers (unless
-- configured), and pauses the model when they say nothing is left until a reset.
--
-- Then each call asking, in order, gets a start time: after the pause, and after both
-- buckets' theoretical arrival times, each call moving them on by one request and by its
-- tokens. The calls whose start falls within the horizon are granted (a prefix of them);
-- the others are refused with their would-be start. `learning`: the model's limits are
-- unknown and an earlier call is finding them out: nothing is granted meanwhile (the
-- provider would answer the first burst with 429s); with none under way, the first call
-- asking is the one that learns. `unlimited`: no limit known and no pause on; everything
-- is granted at once.
--
-- The calls booked ahead follow the calls asking, each moving the buckets on in the same
-- way, and are granted as far as they fit within the horizon. Their starts rise evenly, so
-- how many fit is worked out in one row (`ahead`), not one row per call: that row comes
-- first, numbered 0, when any were asked for, with the start of the first call asking
-- (or that would have) as `wait`; the worker spaces them out the same way.
--
-- No row comes back when the model is new (add_model, then ask again).
WITH q AS (
    SELECT * FROM model_quotas WHERE model = $1 FOR UPDATE
),
settled AS (
    SELECT q.model,
           CASE WHEN q.source = 'headers' AND $8::float8 > 0 THEN $8::float8 ELSE q.rpm END AS rpm,
           CASE WHEN q.source = 'headers' AND $11::float8 > 0 THEN $11::float8 ELSE q.tpm END AS tpm,
           q.request_tat,
           CASE WHEN q.tpm IS NOT NULL AND q.token_tat IS NOT NULL
                THEN q.token_tat + make_interval(secs => 60.0 * $7::float8 / (q.tpm * $4::float8))
                ELSE q.token_tat END AS token_tat,
           greatest(q.paused_until,
                    CASE WHEN $9::bigint = 0 THEN now() + make_interval(secs => $10::float8) END,
                    CASE WHEN $12::bigint = 0 THEN now() + make_interval(secs => $13::float8) END)
               AS paused_until,
           q.learned OR $6::int > 0 AS learned,
           CASE WHEN $6::int > 0 THEN NULL ELSE q.learning_until END AS learning_until
    FROM q
),
plan AS (
    SELECT s.*,
           NOT s.learned AND coalesce(s.learning_until > now(), false) AS learning,
           s.learned AND s.rpm IS NULL AND s.tpm IS NULL
               AND coalesce(s.paused_until <= now(), true) AS unlimited,
           greatest(now(), coalesce(s.paused_until, now()),
                    CASE WHEN s.rpm IS NOT NULL THEN coalesce(s.request_tat, now()) END,
                    CASE WHEN s.tpm IS NOT NULL THEN coalesce(s.token_tat, now()) END) AS start,
           coalesce(60.0 / (s.rpm * $4::float8), 0) AS per_request,
           coalesce(60.0 / (s.tpm * $4::float8), 0) AS per_token
    FROM settled s
),
calls AS (
    SELECT c.i, c.tokens,
           p.start + make_interval(secs => greatest(
               (c.i - 1) * p.per_request,
               (sum(c.tokens) OVER (ORDER BY c.i) - c.tokens) * p.per_token)) AS at
    FROM plan p, unnest($2::int[]) WITH ORDINALITY AS c(tokens, i)
),
decided AS (
    SELECT c.i, c.tokens, c.at,
           p.unlimited
           OR (NOT p.learning AND (p.learned OR c.i = 1)
               AND c.at <= now() + make_interval(secs => $3::float8)) AS granted
    FROM calls c, plan p
),
asked AS (
    SELECT count(*) AS n, coalesce(sum(tokens), 0) AS tokens,
           count(*) FILTER (WHERE granted) AS granted_n,
           coalesce(sum(tokens) FILTER (WHERE granted), 0) AS granted_tokens
    FROM decided
),
ahead AS (
    -- Call j after the asking ones starts max((n + j - 1) * per_request,
    -- (tokens + (j - 1) * $15) * per_token) after `start`: the largest j within the horizon
    -- on both counts. None while the limits are unknown or being learned, or unlimited.
    SELECT CASE WHEN $14::int <= 0 OR p.learning OR NOT p.learned OR p.unlimited THEN 0
                ELSE greatest(0, least(
                    $14::int,
                    CASE WHEN p.per_request > 0
                         THEN floor(r.room / p.per_request)::bigint - a.n + 1
                         ELSE $14::int END,
                    CASE WHEN p.per_token > 0 AND $15::int > 0
                         THEN floor((r.room / p.per_token - a.tokens) / $15::int)::bigint + 1
                         WHEN p.per_token > 0 AND r.room < a.tokens * p.per_token THEN 0
                         ELSE $14::int END))
           END AS n
    FROM plan p, asked a,
         LATERAL (SELECT extract(epoch FROM now() + make_interval(secs => $3::float8) - p.start)
                         ::float8 AS room) r
),
taken AS (
    SELECT a.granted_n + h.n AS n, a.granted_tokens + h.n * greatest($15::int, 0) AS tokens
    FROM asked a, ahead h
),
updated AS (
    UPDATE model_quotas m
    SET rpm = p.rpm,
        tpm = p.tpm,
        request_tat = CASE WHEN p.rpm IS NOT NULL AND NOT p.unlimited AND t.n > 0
                           THEN p.start + make_interval(secs => t.n * p.per_request)
                           ELSE p.request_tat END,
        token_tat = CASE WHEN p.tpm IS NOT NULL AND NOT p.unlimited AND t.n > 0
                         THEN p.start + make_interval(secs => t.tokens * p.per_token)
                         ELSE p.token_tat END,
        paused_until = p.paused_until,
        learned = p.learned,
        learning_until = CASE WHEN NOT p.learned AND NOT p.learning AND t.n > 0
                              THEN now() + make_interval(secs => $5::float8)
                              ELSE p.learning_until END,
        remaining_requests = coalesce($9::bigint, m.remaining_requests),
        remaining_tokens = coalesce($12::bigint, m.remaining_tokens),
        requests_reset_at = coalesce(now() + make_interval(secs => $10::float8), m.requests_reset_at),
        tokens_reset_at = coalesce(now() + make_interval(secs => $13::float8), m.tokens_reset_at),
        updated_at = now()
    FROM plan p, taken t
    WHERE m.model = p.model
    RETURNING m.model
)
SELECT d.i, d.granted, extract(epoch FROM d.at - now())::float8 AS wait,
       p.learning, p.unlimited, NOT p.learned AS learns, p.per_request, p.per_token,
       0::bigint AS ahead
FROM decided d, plan p
UNION ALL
SELECT 0, h.n > 0, extract(epoch FROM p.start - now())::float8,
       p.learning, p.unlimited, NOT p.learned, p.per_request, p.per_token, h.n
FROM ahead h, plan p
WHERE $14::int > 0
ORDER BY 1;


-- name: rate_limited
-- $1 model, $2 seconds the provider asked to wait, $3..$8 its headers as in settle_quota.
-- A 429: the model is paused for every worker until then (not only for this call).
-- Returns the seconds left of the pause.
UPDATE model_quotas q
SET paused_until = greatest(q.paused_until, now() + make_interval(secs => $2::float8)),
    rate_limited = q.rate_limited + 1,
    rpm = CASE WHEN q.source = 'headers' AND $3::float8 > 0 THEN $3::float8 ELSE q.rpm END,
    tpm = CASE WHEN q.source = 'headers' AND $6::float8 > 0 THEN $6::float8 ELSE q.tpm END,
    learned = true,
    learning_until = NULL,
    remaining_requests = coalesce($4::bigint, q.remaining_requests),
    remaining_tokens = coalesce($7::bigint, q.remaining_tokens),
    requests_reset_at = coalesce(now() + make_interval(secs => $5::float8), q.requests_reset_at),
    tokens_reset_at = coalesce(now() + make_interval(secs => $8::float8), q.tokens_reset_at),
    updated_at = now()
WHERE q.model = $1
RETURNING extract(epoch FROM q.paused_until - now())::float8 AS pause;
