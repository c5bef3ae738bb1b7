-- API tokens, stored as sha256 hashes. Only `reportsvc.queue.tokens` runs these.


-- name: active_token_hashes
SELECT token_hash FROM api_tokens WHERE revoked_at IS NULL;


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
