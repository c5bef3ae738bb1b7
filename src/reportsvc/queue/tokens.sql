-- API tokens, stored as sha256 hashes. Only `reportsvc.queue.tokens` runs these.


-- name: token_state
-- The hashes of the active tokens, and whether any token was ever stored (revoked ones
-- included): an API that was locked once stays locked.
SELECT coalesce(array_agg(token_hash) FILTER (WHERE revoked_at IS NULL), '{}') AS active,
       count(*) > 0 AS ever
FROM api_tokens;


-- name: add_token
-- $1 name, $2 sha256 of the token. No row: the name is taken.
INSERT INTO api_tokens (name, token_hash) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING
RETURNING id;


-- name: revoke_token
-- $1 name
UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING id;


-- name: list_tokens
SELECT name, created_at, revoked_at FROM api_tokens ORDER BY created_at;
