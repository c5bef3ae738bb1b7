-- What the API reads and writes: new jobs, a job with its report, listings, cancellation.
-- Only `reportsvc.queue.reports` runs them. `{name}` placeholders are sets of statuses.


-- name: create_jobs
-- $1 ids, $2 topics, $3 models, $4 options (jsonb), $5 idempotency keys (or NULL),
-- $6 job timeouts (s), $7 owners (the API token's id, or NULL), $8 the most jobs pending in
-- all (MAX_PENDING_JOBS; 0: no bound), $9 the most pending per owner with a token
-- (MAX_PENDING_JOBS_PER_OWNER; 0: no bound), $10 webhook URLs (or NULL), $11 outlines
-- the clients gave (a JSON array of titles, as text; NULL: the model writes one).
--
-- One row per POST, each with its outline step, or, when the client gave the outline,
-- already writing, with one section step per title (or, if it also asked to review the
-- outline, waiting for that review, with no step at all); the API inserts the requests that arrive
-- while the previous insert is under way together (group commit: one round trip and one
-- WAL flush for the lot, and each request is answered only once its rows are committed).
-- Returns, for every request, whether its job was created, and if not, whether it was
-- refused for room (`refused`) — otherwise its owner had already used its idempotency key
-- (also earlier in the same batch; see find_job_by_key). Idle workers are woken by
-- `wake_workers` after this commits, not from inside it: a NOTIFY in every insert
-- serialises all commits on PostgreSQL's notification queue lock.
WITH requested AS (
    SELECT r.*, row_number() OVER (ORDER BY r.ord) AS nth,
           row_number() OVER (PARTITION BY r.owner ORDER BY r.ord) AS nth_of_owner
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::float8[],
                $7::text[], $10::text[], $11::text[])
         WITH ORDINALITY
         AS r(id, topic, model, options, idempotency_key, timeout, owner, webhook_url,
              given_outline, ord)
),
-- Admission, decided when the rows go in: reportsvc_admit (migration 0005) grants room
-- one decision at a time across API processes, so requests in flight cannot all squeeze
-- past the bound; NULL: no bound.
room AS (
    SELECT CASE WHEN $8 > 0
                THEN reportsvc_admit('*', $8, (SELECT count(*)::int FROM requested)) END AS n
),
owners AS (
    SELECT o.owner, reportsvc_admit(o.owner, $9, o.wanted) AS n
    FROM (SELECT owner, count(*)::int AS wanted FROM requested
          WHERE owner IS NOT NULL GROUP BY owner) o
    WHERE $9 > 0
),
judged AS (
    SELECT r.*,
           CASE WHEN r.nth > room.n THEN 'full'
                WHEN r.nth_of_owner > o.n THEN 'owner_full' END AS refused
    FROM requested r CROSS JOIN room LEFT JOIN owners o ON o.owner = r.owner
),
-- Fair turns (migration 0007): each admitted job takes its owner's next turn, but none
-- earlier than the oldest job under way (so an owner that was idle does not jump ahead of
-- work already waiting by more than that), nor than anyone's next turn when nothing is
-- under way (so idle time is not saved up). Steps are claimed in turn order: owners with
-- queued work take turns, report by report.
clock AS (
    SELECT coalesce((SELECT turn FROM jobs WHERE status IN ({active_jobs})
                     ORDER BY turn LIMIT 1),
                    (SELECT next_turn FROM fair_turns WHERE owner = '*'),
                    0) AS turn
),
admitted AS (
    SELECT j.*, coalesce(j.owner, '') AS turn_owner,
           row_number() OVER (PARTITION BY coalesce(j.owner, '') ORDER BY j.ord) - 1 AS nth_turn
    FROM judged j
    WHERE j.refused IS NULL
),
first_turns AS (
    SELECT a.turn_owner, greatest(c.turn, coalesce(f.next_turn, 0)) AS turn,
           count(*) AS n
    FROM admitted a CROSS JOIN clock c LEFT JOIN fair_turns f ON f.owner = a.turn_owner
    GROUP BY a.turn_owner, c.turn, f.next_turn
),
created AS (
    INSERT INTO jobs (id, topic, model, options, idempotency_key, deadline_at, owner,
                      webhook_url, turn, status, outline, sections_total, started_at,
                      review_since)
    SELECT a.id, a.topic, a.model, a.options, a.idempotency_key,
           now() + make_interval(secs => a.timeout), a.owner, a.webhook_url,
           t.turn + a.nth_turn,
           CASE WHEN a.given_outline IS NULL THEN 'outlining'
                WHEN coalesce((a.options ->> 'review_outline')::boolean, false)
                     THEN 'awaiting_review'
                ELSE 'writing' END,
           CASE WHEN a.given_outline IS NOT NULL
                THEN ARRAY(SELECT jsonb_array_elements_text(a.given_outline::jsonb)) END,
           CASE WHEN a.given_outline IS NOT NULL
                THEN jsonb_array_length(a.given_outline::jsonb)
                     + CASE WHEN coalesce((a.options ->> 'summary')::boolean, false)
                            THEN 1 ELSE 0 END END,
           CASE WHEN a.given_outline IS NOT NULL THEN now() END,
           CASE WHEN a.given_outline IS NOT NULL
                     AND coalesce((a.options ->> 'review_outline')::boolean, false)
                THEN now() END
    FROM admitted a JOIN first_turns t ON t.turn_owner = a.turn_owner
    ORDER BY a.ord
    ON CONFLICT ((coalesce(owner, '')), idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING
    RETURNING id, turn, outline, status
),
-- The outline step of each new job, in the job's turn; within a turn, after the steps of
-- reports already under way.
outlines AS (
    INSERT INTO steps (job_id, kind, priority, turn)
    SELECT id, 'outline', 1, turn FROM created WHERE outline IS NULL
),
-- A job whose client gave the outline starts with its sections, in its turn.
given_sections AS (
    INSERT INTO steps (job_id, kind, position, title, turn)
    SELECT c.id, 'section', t.ord - 1, t.title, c.turn
    FROM created c, unnest(c.outline) WITH ORDINALITY AS t(title, ord)
    WHERE c.outline IS NOT NULL AND c.status = 'writing'
),
advanced AS (
    INSERT INTO fair_turns AS f (owner, next_turn)
    SELECT turn_owner, turn + n FROM first_turns
    UNION ALL
    SELECT '*', max(turn + n) FROM first_turns HAVING count(*) > 0
    ON CONFLICT (owner) DO UPDATE SET next_turn = greatest(f.next_turn, excluded.next_turn)
)
SELECT j.id, c.id IS NOT NULL AS created, j.refused
FROM judged j LEFT JOIN created c ON c.id = j.id;


-- name: insert_passages
-- $1 job ids, $2 numbers, $3 documents, $4 source ids (or NULL), $5 titles, $6 passages,
-- $7 text-search configurations, $8 the jobs create_jobs just created.
-- A new job's sources, in the transaction that created it (only the passages of jobs
-- that were created: not those refused, nor repeats of an Idempotency-Key). The tsvector
-- is computed here, once, in the job's language.
INSERT INTO job_passages (job_id, number, document, source_id, title, text, tsv)
SELECT p.job_id, p.number, p.document, p.source_id, p.title, p.text,
       to_tsvector(p.config::regconfig, p.title || E'\n\n' || p.text)
FROM unnest($1::uuid[], $2::int[], $3::int[], $4::uuid[], $5::text[], $6::text[],
            $7::text[]) AS p(job_id, number, document, source_id, title, text, config)
WHERE p.job_id = ANY($8::uuid[]);


-- name: find_job_by_key
-- $1 idempotency key, $2 owner (or NULL)
SELECT id, topic, model, options, webhook_url, outline FROM jobs
WHERE idempotency_key = $1 AND coalesce(owner, '') = coalesce($2, '');


-- name: get_job
-- $1 job id, $2 owner (NULL: any). Finished sections come along, in outline order, for the
-- report (or, while the job runs, for partial results), with the summary when there is
-- one, the titles of sections cut short by max_tokens, the tokens of every step, whether a
-- step waits for its model's quota, and the latest webhook delivery when the job has a
-- webhook URL.
SELECT j.id, j.topic, j.status, j.model, j.options, j.outline, j.sections_total,
       j.sections_done, j.error, j.created_at, j.finished_at, j.review_since,
       st.titles AS done_titles, st.contents AS done_contents, st.summary, st.truncated,
       st.prompt_tokens, st.completion_tokens, st.waiting_for_quota, st.citations_removed,
       st.unsourced, j.webhook_url,
       w.status AS webhook_status, w.attempts AS webhook_attempts,
       w.last_status_code AS webhook_status_code, w.last_error AS webhook_error,
       w.run_after AS webhook_run_after
FROM jobs j
CROSS JOIN LATERAL (
    SELECT array_agg(s.title ORDER BY s.position)
               FILTER (WHERE s.status = 'done' AND s.kind = 'section') AS titles,
           array_agg(s.content ORDER BY s.position)
               FILTER (WHERE s.status = 'done' AND s.kind = 'section') AS contents,
           max(s.content) FILTER (WHERE s.status = 'done' AND s.kind = 'summary') AS summary,
           array_agg(s.title ORDER BY s.position)
               FILTER (WHERE s.finish_reason = 'length' AND s.status = 'done'
                       AND s.kind IN ({report_parts})) AS truncated,
           coalesce(sum(s.prompt_tokens), 0)::int AS prompt_tokens,
           coalesce(sum(s.completion_tokens), 0)::int AS completion_tokens,
           coalesce(bool_or(s.status = 'queued' AND s.waiting_for = 'quota'), false)
               AS waiting_for_quota,
           -- A report with sources: citations removed, and the sections no passage was
           -- relevant to.
           coalesce(sum(s.citations_removed), 0)::int AS citations_removed,
           array_agg(s.title ORDER BY s.position)
               FILTER (WHERE s.status = 'done' AND s.kind = 'section'
                       AND s.passages_given = 0) AS unsourced
    FROM steps s
    WHERE s.job_id = j.id
) st
-- The job's latest event, read from the end of the (job_id, kind, position) index.
LEFT JOIN LATERAL (
    SELECT s.status, s.attempts, s.last_status_code, s.last_error, s.run_after
    FROM steps s
    WHERE j.webhook_url IS NOT NULL AND s.job_id = j.id AND s.kind = 'webhook'
    ORDER BY s.position DESC
    LIMIT 1
) w ON true
WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2);


-- name: cited_passages
-- $1 job id, $2 passage numbers. The passages a report cites, by number.
SELECT number, title, text FROM job_passages
WHERE job_id = $1 AND number = ANY($2::int[])
ORDER BY number;


-- name: list_jobs
-- $1 statuses (NULL: all), $2 page size, $3 and $4: the (created_at, id) of the last job of
-- the previous page (NULL: start from the newest). Keyset pagination on jobs_created_at_idx.
SELECT id, topic, status, sections_total, sections_done, created_at, finished_at
FROM jobs
WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $2;


-- name: list_owner_jobs
-- The same for the jobs of one owner ($5), on jobs_owner_created_at_idx. That index holds
-- only jobs with an owner, so an API without tokens does not maintain it on every update.
SELECT id, topic, status, sections_total, sections_done, created_at, finished_at
FROM jobs
WHERE owner = $5
  AND ($1::text[] IS NULL OR status = ANY($1::text[]))
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
ORDER BY owner, created_at DESC, id DESC
LIMIT $2;


-- name: retire_owned_queued_steps
-- $1 job id, $2 owner (NULL: any). Step 1 of a cancellation: the job's queued steps will
-- never run. Step rows are locked before the job row, as everywhere else; running steps
-- are abandoned by their worker at its next heartbeat. A webhook delivery of an earlier
-- ending (of a job retried since) still goes.
UPDATE steps s
SET status = 'cancelled', finished_at = now()
FROM jobs j
WHERE s.job_id = $1 AND s.status = 'queued' AND s.kind <> 'webhook'
  AND j.id = s.job_id AND j.status IN ({unfinished_jobs})
  AND ($2::text IS NULL OR j.owner = $2);


-- name: cancel_job
-- $1 job id, $2 owner (NULL: any). Step 2, in the same transaction. Returns the job's
-- status after the call, and whether this call cancelled it; no row: no such job.
WITH cancelled AS (
    UPDATE jobs
    SET status = 'cancelled', finished_at = now()
    WHERE id = $1 AND status IN ({unfinished_jobs}) AND ($2::text IS NULL OR owner = $2)
    RETURNING id, status
)
SELECT status, true AS now FROM cancelled
UNION ALL
SELECT status, false FROM jobs
WHERE id = $1 AND ($2::text IS NULL OR owner = $2) AND NOT EXISTS (SELECT 1 FROM cancelled);



-- name: approve_outline
-- $1 job id, $2 owner (NULL: any), $3 the outline (a JSON array of titles, as text), $4
-- job timeout (s). The owner's review of a job in awaiting_review: the job takes the
-- outline (edited or not; its length may differ from what was asked for) and a new turn
-- (reportsvc_next_turn, migration 0009: its owner's next, as a new job would get, so that
-- approving old jobs does not jump ahead of other owners' queued work), its deadline
-- starts again, and one section step per title is queued in that turn. The status is
-- checked by the UPDATE itself, so of concurrent reviews exactly one wins; the others
-- (and a review after the job failed for want of one) find no row. No step of the job is
-- queued or running meanwhile, so the job row is the only one locked before the inserts.
WITH approved AS (
    UPDATE jobs
    SET status = 'writing',
        outline = ARRAY(SELECT jsonb_array_elements_text($3::text::jsonb)),
        sections_total = jsonb_array_length($3::text::jsonb)
            + CASE WHEN coalesce((options ->> 'summary')::boolean, false) THEN 1 ELSE 0 END,
        sections_done = 0,
        review_since = NULL,
        turn = reportsvc_next_turn(coalesce(owner, '')),
        deadline_at = now() + make_interval(secs => $4)
    WHERE id = $1 AND status = 'awaiting_review' AND ($2::text IS NULL OR owner = $2)
    RETURNING id, outline, turn
),
queued AS (
    INSERT INTO steps (job_id, kind, position, title, turn)
    SELECT a.id, 'section', t.ord - 1, t.title, a.turn
    FROM approved a, unnest(a.outline) WITH ORDINALITY AS t(title, ord)
    RETURNING job_id
)
SELECT (SELECT count(*) FROM queued) AS queued,
       CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify('reportsvc_work', 'steps') END
           AS notified
FROM approved;


-- name: job_state
-- $1 job id, $2 owner (NULL: any). What a refused review or rewrite is told: the job's
-- status and outline length (no row: no such job of this owner).
SELECT status, cardinality(outline) AS outline_length FROM jobs
WHERE id = $1 AND ($2::text IS NULL OR owner = $2);


-- name: lock_rewrite_steps
-- $1 job id, $2 owner (NULL: any), $3 the section's index in the outline. Step 1 of a
-- rewrite: the section's step and the summary's, if the job has one, locked (steps before
-- the job, as everywhere). Only a completed job's done steps qualify: while one rewrite is
-- under way the job is writing, so a second one (of any section) finds nothing; two
-- rewrite requests at once queue behind this lock, and the second finds the step queued.
SELECT s.id, s.kind, s.title
FROM steps s JOIN jobs j ON j.id = s.job_id
WHERE s.job_id = $1 AND j.status = 'completed' AND ($2::text IS NULL OR j.owner = $2)
  AND s.status = 'done'
  AND ((s.kind = 'section' AND s.position = $3) OR s.kind = 'summary')
ORDER BY s.id
FOR UPDATE OF s;


-- name: reopen_for_rewrite
-- $1 job id, $2 how many parts are written again (the section, and the summary if any),
-- $3 job timeout (s). Step 2: the job is being written again, in a new turn (as in
-- approve_outline), with a new deadline; its counter goes back by the parts to rewrite,
-- so the usual completion (complete_steps) finishes it, and ends it again as completed
-- (its webhook fires again, with a new event). Checked against completed once more, under
-- the job's lock.
UPDATE jobs
SET status = 'writing',
    sections_done = sections_done - $2,
    finished_at = NULL,
    error = NULL,
    turn = reportsvc_next_turn(coalesce(owner, '')),
    deadline_at = now() + make_interval(secs => $3)
WHERE id = $1 AND status = 'completed'
RETURNING turn;


-- name: queue_rewrite
-- $1 step ids (the section's, and the summary's if any, as locked by step 1), $2 the
-- instruction (or NULL), $3 the job's new turn. Step 3: the texts being replaced go to
-- section_history, and the section's step goes back to the queue with the instruction.
-- It keeps its text (the claim hands it to the model as the version to rewrite, and GET
-- shows only done sections) and its tokens (each version's add up); it gets fresh
-- attempts, as `reportsvc retry` gives (no worker holds a done step, so no stale write
-- can present a reused attempt number with a lease on it).
-- The summary's step stays done until the section is written; then complete_steps queues
-- it again.
-- A step's tokens add up over its versions, so the history row keeps this version's share:
-- the step's tokens less those of the versions replaced before.
WITH kept AS (
    INSERT INTO section_history (job_id, kind, position, title, content, instruction,
                                 prompt_tokens, completion_tokens, written_at)
    SELECT s.job_id, s.kind, s.position, s.title, s.content, $2,
           s.prompt_tokens - coalesce(e.prompt_tokens, 0),
           s.completion_tokens - coalesce(e.completion_tokens, 0), s.finished_at
    FROM steps s
    LEFT JOIN LATERAL (
        SELECT sum(h.prompt_tokens) AS prompt_tokens,
               sum(h.completion_tokens) AS completion_tokens
        FROM section_history h
        WHERE h.job_id = s.job_id AND h.kind = s.kind AND h.position = s.position
    ) e ON true
    WHERE s.id = ANY($1::bigint[])
)
UPDATE steps
SET status = 'queued', instruction = $2, turn = $3, priority = 0, run_after = now(),
    finished_at = NULL, last_error = NULL, waiting_for = NULL, finish_reason = NULL,
    attempts = 0
WHERE id = ANY($1::bigint[]) AND kind = 'section'
RETURNING id, pg_notify('reportsvc_work', 'steps') AS notified;


-- name: section_history
-- $1 job id. The texts rewrites replaced, oldest first per section.
SELECT kind, position, title, content, instruction, prompt_tokens, completion_tokens,
       written_at, replaced_at
FROM section_history
WHERE job_id = $1
ORDER BY position, id;


-- name: admit_resumed_job
-- $1 job id. A reviewed or rewritten job is under way again: it counts towards the
-- admission bounds (the upper bound reportsvc_admit keeps), in all and for its owner, as
-- `reportsvc retry` counts a reopened job. It is not refused for room: it was admitted.
UPDATE admission SET admitted = admitted + 1
WHERE scope = '*' OR scope = (SELECT owner FROM jobs WHERE id = $1);
