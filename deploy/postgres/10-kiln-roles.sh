#!/bin/sh
# One PostgreSQL role per service, each with its own password, created when the postgres
# container initialises an empty data volume (/docker-entrypoint-initdb.d runs this once):
#
#   kiln          owns the Kiln database; only `kiln migrate` logs in as it (DDL)
#   kiln_api      the API: reads and writes rows, cannot change the schema
#   kiln_worker   the worker: the same
#   temporal      owns Temporal's two databases (Temporal's auto-setup creates the schema)
#
# The superuser (POSTGRES_USER, password POSTGRES_PASSWORD) is used by no service. No role can
# connect to another's database. Passwords come from the environment (deploy/generate-env).
# Names can be changed with KILN_DB, TEMPORAL_DB_USER, TEMPORAL_DB, TEMPORAL_VISIBILITY_DB.
set -eu
: "${KILN_DB_PASSWORD:?}" "${KILN_API_DB_PASSWORD:?}" "${KILN_WORKER_DB_PASSWORD:?}"
: "${TEMPORAL_DB_PASSWORD:?}"
kiln_db="${KILN_DB:-kiln}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
  --dbname "${POSTGRES_DB:-postgres}" \
  -v kiln_db="$kiln_db" -v kiln_api="${kiln_db}_api" -v kiln_worker="${kiln_db}_worker" \
  -v temporal="${TEMPORAL_DB_USER:-temporal}" -v temporal_db="${TEMPORAL_DB:-temporal}" \
  -v visibility_db="${TEMPORAL_VISIBILITY_DB:-temporal_visibility}" \
  -v kiln_pw="$KILN_DB_PASSWORD" -v api_pw="$KILN_API_DB_PASSWORD" \
  -v worker_pw="$KILN_WORKER_DB_PASSWORD" -v temporal_pw="$TEMPORAL_DB_PASSWORD" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE :"kiln_db" LOGIN PASSWORD :'kiln_pw';
CREATE ROLE :"kiln_api" LOGIN PASSWORD :'api_pw';
CREATE ROLE :"kiln_worker" LOGIN PASSWORD :'worker_pw';
CREATE ROLE :"temporal" LOGIN PASSWORD :'temporal_pw';

CREATE DATABASE :"kiln_db" OWNER :"kiln_db";
CREATE DATABASE :"temporal_db" OWNER :"temporal";
CREATE DATABASE :"visibility_db" OWNER :"temporal";
REVOKE ALL ON DATABASE :"kiln_db", :"temporal_db", :"visibility_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"kiln_db" TO :"kiln_api", :"kiln_worker";

\connect :"kiln_db"
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"kiln_db";
GRANT USAGE ON SCHEMA public TO :"kiln_api", :"kiln_worker";
-- Tables and sequences `kiln migrate` creates (as the owner) are usable by the services.
ALTER DEFAULT PRIVILEGES FOR ROLE :"kiln_db" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"kiln_api", :"kiln_worker";
ALTER DEFAULT PRIVILEGES FOR ROLE :"kiln_db" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"kiln_api", :"kiln_worker";

\connect :"temporal_db"
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"temporal";
\connect :"visibility_db"
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"temporal";
SQL
