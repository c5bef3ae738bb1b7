-- Sources: documents uploaded for reports to name, and the search of a job's passages.
-- Only `reportsvc.queue.sources` runs them. An owner is an API token's id, or NULL when
-- the API runs without tokens; `coalesce(owner, '')` makes NULL an owner like any other.


-- name: create_source
-- $1 owner (or NULL), $2 title, $3 text, $4 the most sources one owner may store
-- (SOURCES_MAX_STORED; 0: no bound). No row back: the owner has that many already. The
-- count is read on sources_owner_created_at_idx; two uploads at the same moment may both
-- pass it, so the bound can be exceeded by the uploads in flight, no more.
INSERT INTO sources (owner, title, text)
SELECT $1, $2, $3
WHERE $4 = 0 OR (SELECT count(*) FROM sources WHERE coalesce(owner, '') = coalesce($1, '')) < $4
RETURNING id, title, length(text) AS characters, created_at;


-- name: list_sources
-- $1 owner (or NULL), $2 page size, $3 and $4: the (created_at, id) of the last source of
-- the previous page (NULL: start from the newest). On sources_owner_created_at_idx.
SELECT id, title, length(text) AS characters, created_at
FROM sources
WHERE coalesce(owner, '') = coalesce($1, '')
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
ORDER BY coalesce(owner, ''), created_at DESC, id DESC
LIMIT $2;


-- name: get_sources
-- $1 source ids, $2 owner (or NULL). Those of the ids that exist and belong to the owner.
SELECT id, title, text, created_at
FROM sources
WHERE id = ANY($1::uuid[]) AND coalesce(owner, '') = coalesce($2, '');


-- name: delete_source
-- $1 source id, $2 owner (or NULL). Jobs that were given it keep their copy.
DELETE FROM sources
WHERE id = $1 AND coalesce(owner, '') = coalesce($2, '')
RETURNING id;


-- name: search_passages
-- $1 job id, $2 text-search configuration, $3 the section's title, $4 the job's topic,
-- $5 how many passages at most.
--
-- A passage is relevant to a section when it shares a word (stemmed, stop words left out)
-- with the section's title. plainto_tsquery joins the words with AND; a title's words are
-- rarely all in one passage, so they are joined with OR instead (the quoted lexemes
-- cannot contain " & "). Relevant passages are ranked by the title's words (ts_rank),
-- doubled for a passage that also shares a word with the topic: the topic is the same for
-- every section, so it does not order passages about the report's subject among
-- themselves, but it puts them before passages about something else that happen to use
-- the title's words (another town's harbour). A yes/no rather than a second ts_rank: half
-- the cost when thousands of passages match.
-- The job's rows are found through the primary key (job_id, number), or through the GIN
-- index on tsv when the words are rare: either way an index scan, not the whole table.
WITH q AS MATERIALIZED (
    SELECT replace(plainto_tsquery($2::regconfig, $3)::text, ' & ', ' | ')::tsquery AS title,
           replace(plainto_tsquery($2::regconfig, $4)::text, ' & ', ' | ')::tsquery AS topic
)
SELECT p.number, p.title, p.text
FROM job_passages p, q
WHERE p.job_id = $1 AND p.tsv @@ q.title
ORDER BY ts_rank(p.tsv, q.title) * CASE WHEN p.tsv @@ q.topic THEN 2 ELSE 1 END DESC,
         p.number
LIMIT $5;


-- name: source_overview
-- $1 job id, $2 characters of an opening. Each document of the job's sources: its title, how many passages it has,
-- and the beginning of its first passage.
SELECT DISTINCT ON (document) document, title, left(text, $2) AS opening,
       count(*) OVER (PARTITION BY document) AS passages
FROM job_passages
WHERE job_id = $1
ORDER BY document, number;
