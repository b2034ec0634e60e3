"""The seed SQL of each source database: realistic shapes (schemas, FKs, indexes, sequences, a table
without a primary key, jsonb, bytea, arrays, an enum, timestamptz, mixed-case quoted names), generated
server-side with generate_series so that even ``scale=100`` (about 1 GB) seeds quickly.

``expected_counts(db, scale)`` gives the row counts the seed produces, for tests and parity checks.
"""

from __future__ import annotations


def _sizes(db: str, scale: int) -> dict[str, int]:
    s = max(1, scale)
    return {
        "rentguy": {"tenants": 1000 * s, "properties": 2000 * s, "leases": 3000 * s, "invoices": 12000 * s,
                    "events": 15000 * s},
        "psra": {"hs_codes": 500, "products": 2000 * s, "rules": 1000, "calculations": 8000 * s,
                 "raw": 5000 * s},
        "wpcs": {"plans": 4, "customers": 500 * s, "sites": 1000 * s, "backups": 6000 * s, "options": 4000 * s},
        "keycloak": {"users": 200 * s},
    }[db]


def expected_counts(db: str, scale: int) -> dict[str, int]:
    """Row counts per qualified table name after seeding ``db`` at ``scale``."""
    n = _sizes(db, scale)
    if db == "rentguy":
        return {'core."Tenant"': n["tenants"], "core.property": n["properties"], "core.lease": n["leases"],
                "billing.invoice": n["invoices"], "billing.payment": n["invoices"] // 2,
                "audit.event_log": n["events"]}
    if db == "psra":
        return {"compliance.hs_code": n["hs_codes"], "compliance.product": n["products"],
                "origin.rule": n["rules"], "origin.calculation": n["calculations"], "origin.raw_import": n["raw"]}
    if db == "wpcs":
        return {"hosting.plan": n["plans"], "hosting.customer": n["customers"], "hosting.site": n["sites"],
                "hosting.backup": n["backups"], "public.wp_options": n["options"]}
    users = n["users"]
    return {"public.realm": 2, "public.client": 10, "public.keycloak_role": 10, "public.keycloak_group": 4,
            "public.user_entity": users + 1, "public.credential": users + 1}


MARKER = """
CREATE TABLE IF NOT EXISTS public._sandbox_seed (
  db text PRIMARY KEY, scale integer NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now());
"""


def rentguy(scale: int) -> str:
    n = _sizes("rentguy", scale)
    return f"""
SELECT setseed(0.42);
CREATE SCHEMA core;
CREATE SCHEMA billing;
CREATE SCHEMA audit;
CREATE TYPE core.lease_status AS ENUM ('draft', 'active', 'ended', 'terminated');
CREATE TABLE core."Tenant" (
  id bigserial PRIMARY KEY,
  "displayName" text NOT NULL,
  email text NOT NULL UNIQUE,
  phone text,
  metadata jsonb NOT NULL DEFAULT '{{}}',
  tags text[] NOT NULL DEFAULT '{{}}',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE core.property (
  id serial PRIMARY KEY,
  owner_tenant_id bigint NOT NULL REFERENCES core."Tenant"(id),
  address text NOT NULL,
  city text NOT NULL,
  monthly_rent numeric(10,2) NOT NULL,
  floor_plan bytea,
  amenities text[],
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX property_owner_idx ON core.property (owner_tenant_id);
CREATE INDEX property_city_idx ON core.property (city);
CREATE TABLE core.lease (
  id bigserial PRIMARY KEY,
  property_id integer NOT NULL REFERENCES core.property(id) ON DELETE CASCADE,
  tenant_id bigint NOT NULL REFERENCES core."Tenant"(id),
  status core.lease_status NOT NULL DEFAULT 'draft',
  starts_on date NOT NULL,
  ends_at timestamptz,
  terms jsonb
);
CREATE INDEX lease_tenant_idx ON core.lease (tenant_id);
CREATE INDEX lease_terms_gin ON core.lease USING gin (terms);
CREATE SEQUENCE billing.invoice_number_seq START 100000;
CREATE TABLE billing.invoice (
  id bigserial PRIMARY KEY,
  number bigint NOT NULL UNIQUE DEFAULT nextval('billing.invoice_number_seq'),
  lease_id bigint NOT NULL REFERENCES core.lease(id),
  amount_cents integer NOT NULL CHECK (amount_cents >= 0),
  currency char(3) NOT NULL DEFAULT 'EUR',
  issued_at timestamptz NOT NULL,
  paid_at timestamptz,
  lines jsonb NOT NULL,
  pdf_digest bytea
);
CREATE INDEX invoice_lease_idx ON billing.invoice (lease_id);
CREATE INDEX invoice_unpaid_idx ON billing.invoice (issued_at) WHERE paid_at IS NULL;
CREATE TABLE billing.payment (
  id bigserial PRIMARY KEY,
  invoice_id bigint NOT NULL REFERENCES billing.invoice(id),
  amount_cents integer NOT NULL,
  method text NOT NULL,
  received_at timestamptz NOT NULL
);
-- an audit log WITHOUT a primary key, on purpose (logical replication needs a REPLICA IDENTITY for it)
CREATE TABLE audit.event_log (
  at timestamptz NOT NULL,
  actor text NOT NULL,
  action text NOT NULL,
  entity text,
  payload jsonb
);
CREATE INDEX event_log_at_idx ON audit.event_log (at);

INSERT INTO core."Tenant" ("displayName", email, phone, metadata, tags, created_at)
SELECT 'Tenant ' || g || ' ' || (ARRAY['B.V.','Holding','& Zn.','VOF'])[1 + g % 4],
       'tenant' || g || '@example.test',
       '+31 6 ' || lpad(((g * 7919) % 100000000)::text, 8, '0'),
       jsonb_build_object('segment', (ARRAY['smb','enterprise','private'])[1 + g % 3], 'score', g % 100,
                          'prefs', jsonb_build_object('lang', (ARRAY['nl','en','de'])[1 + g % 3], 'sms', g % 2 = 0)),
       ARRAY['tag' || (g % 7), 'tier' || (g % 3)],
       timestamptz '2022-01-01 00:00:00+00' + (g || ' minutes')::interval
FROM generate_series(1::bigint, {n["tenants"]}) g;

INSERT INTO core.property (owner_tenant_id, address, city, monthly_rent, floor_plan, amenities, created_at)
SELECT 1 + (g * 7919) % {n["tenants"]}, g || ' Keizersgracht',
       (ARRAY['Amsterdam','Rotterdam','Utrecht','Den Haag','Eindhoven','Groningen'])[1 + g % 6],
       round((600 + random() * 2400)::numeric, 2),
       decode(md5(g::text) || md5((g * 3)::text) || md5((g * 7)::text), 'hex'),
       (ARRAY['balcony','parking','elevator','garden'])[1:(1 + g % 4)],
       timestamptz '2022-01-01 00:00:00+00' + (g || ' hours')::interval
FROM generate_series(1::bigint, {n["properties"]}) g;

INSERT INTO core.lease (property_id, tenant_id, status, starts_on, ends_at, terms)
SELECT 1 + (g * 104729) % {n["properties"]}, 1 + (g * 15485863) % {n["tenants"]},
       (ARRAY['draft','active','active','ended','terminated']::core.lease_status[])[1 + g % 5],
       date '2022-01-01' + (g % 900)::int,
       CASE WHEN g % 5 IN (3, 4) THEN timestamptz '2024-01-01 00:00:00+00' + (g % 300 || ' days')::interval END,
       jsonb_build_object('deposit_months', 1 + g % 3, 'indexation', 'CPI', 'pets', g % 4 = 0)
FROM generate_series(1::bigint, {n["leases"]}) g;

INSERT INTO billing.invoice (lease_id, amount_cents, issued_at, paid_at, lines, pdf_digest)
SELECT 1 + (g * 7) % {n["leases"]}, 50000 + (g * 37) % 250000,
       timestamptz '2023-01-01 00:00:00+00' + (g || ' minutes')::interval * 7,
       CASE WHEN g % 2 = 0 THEN timestamptz '2023-01-02 00:00:00+00' + (g || ' minutes')::interval * 7 END,
       jsonb_build_array(jsonb_build_object('item', 'rent', 'cents', 50000 + (g * 37) % 250000),
                         jsonb_build_object('item', 'service', 'cents', (g * 13) % 5000, 'vat', 0.21)),
       sha256(('invoice-' || g)::bytea)
FROM generate_series(1::bigint, {n["invoices"]}) g;

INSERT INTO billing.payment (invoice_id, amount_cents, method, received_at)
SELECT i.id, i.amount_cents, (ARRAY['ideal','sepa','card'])[1 + i.id % 3], i.paid_at
FROM billing.invoice i WHERE i.paid_at IS NOT NULL;

INSERT INTO audit.event_log (at, actor, action, entity, payload)
SELECT timestamptz '2023-01-01 00:00:00+00' + (g || ' seconds')::interval * 61,
       (ARRAY['system','api','admin','tenant-portal'])[1 + g % 4],
       (ARRAY['create','update','delete','login','export'])[1 + g % 5],
       (ARRAY['lease','invoice','property','tenant'])[1 + g % 4] || ':' || (g % 997),
       jsonb_build_object('ip', '10.0.' || (g % 255) || '.' || (g % 253), 'ok', g % 17 <> 0, 'n', g)
FROM generate_series(1::bigint, {n["events"]}) g;
"""


def psra(scale: int) -> str:
    n = _sizes("psra", scale)
    return f"""
SELECT setseed(0.17);
CREATE SCHEMA compliance;
CREATE SCHEMA origin;
CREATE TYPE origin.verdict AS ENUM ('originating', 'non_originating', 'insufficient_data');
CREATE TABLE compliance.hs_code (
  code varchar(10) PRIMARY KEY,
  description text NOT NULL,
  chapter smallint NOT NULL
);
CREATE TABLE compliance.product (
  id bigserial PRIMARY KEY,
  sku text NOT NULL UNIQUE,
  "productName" text NOT NULL,
  hs_code varchar(10) NOT NULL REFERENCES compliance.hs_code(code),
  attributes jsonb NOT NULL,
  countries text[] NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX product_hs_idx ON compliance.product (hs_code);
CREATE TABLE origin.rule (
  id serial PRIMARY KEY,
  hs_code varchar(10) NOT NULL REFERENCES compliance.hs_code(code),
  agreement text NOT NULL,
  rule_text text NOT NULL,
  params jsonb NOT NULL
);
CREATE TABLE origin.calculation (
  id bigserial PRIMARY KEY,
  product_id bigint NOT NULL REFERENCES compliance.product(id),
  rule_id integer NOT NULL REFERENCES origin.rule(id),
  verdict origin.verdict NOT NULL,
  inputs jsonb NOT NULL,
  materials numeric(12,4)[] NOT NULL,
  computed_at timestamptz NOT NULL,
  certificate bytea
);
CREATE INDEX calculation_product_idx ON origin.calculation (product_id);
CREATE INDEX calculation_verdict_idx ON origin.calculation (verdict, computed_at DESC);
-- raw import staging table WITHOUT a primary key
CREATE TABLE origin.raw_import (
  line_no integer NOT NULL,
  source text NOT NULL,
  raw jsonb,
  imported_at timestamptz NOT NULL
);

INSERT INTO compliance.hs_code (code, description, chapter)
SELECT lpad((10000000 + g * 1931)::text, 8, '0'), 'HS heading ' || g, 1 + g % 97
FROM generate_series(1::bigint, {n["hs_codes"]}) g;

INSERT INTO compliance.product (sku, "productName", hs_code, attributes, countries, created_at)
SELECT 'SKU-' || lpad(g::text, 8, '0'), 'Product ' || g,
       lpad((10000000 + (1 + g % {n["hs_codes"]}) * 1931)::text, 8, '0'),
       jsonb_build_object('weight_kg', round((random() * 40)::numeric, 3), 'material', (ARRAY['steel','textile','plastic','wood'])[1 + g % 4]),
       ARRAY[(ARRAY['NL','DE','BE','FR','CN','US'])[1 + g % 6], (ARRAY['NL','DE','BE'])[1 + g % 3]],
       timestamptz '2023-03-01 00:00:00+00' + (g || ' minutes')::interval * 13
FROM generate_series(1::bigint, {n["products"]}) g;

INSERT INTO origin.rule (hs_code, agreement, rule_text, params)
SELECT lpad((10000000 + (1 + g % {n["hs_codes"]}) * 1931)::text, 8, '0'),
       (ARRAY['EU-UK TCA','EU-JP EPA','EU-CA CETA','GSP'])[1 + g % 4],
       'MaxNOM ' || (20 + g % 50) || '% (EXW)',
       jsonb_build_object('max_nom', 20 + g % 50, 'tolerance', 10, 'cumulation', g % 2 = 0)
FROM generate_series(1::bigint, {n["rules"]}) g;

INSERT INTO origin.calculation (product_id, rule_id, verdict, inputs, materials, computed_at, certificate)
SELECT 1 + (g * 7919) % {n["products"]}, 1 + (g * 31) % {n["rules"]},
       (ARRAY['originating','non_originating','insufficient_data']::origin.verdict[])[1 + g % 3],
       jsonb_build_object('exw', 1000 + g % 9000, 'nom', g % 700, 'trace', md5(g::text)),
       ARRAY[round((random() * 100)::numeric, 4), round((random() * 100)::numeric, 4)],
       timestamptz '2024-01-01 00:00:00+00' + (g || ' seconds')::interval * 97,
       CASE WHEN g % 3 = 0 THEN decode(md5('cert' || g) || md5('sig' || g), 'hex') END
FROM generate_series(1::bigint, {n["calculations"]}) g;

INSERT INTO origin.raw_import (line_no, source, raw, imported_at)
SELECT g, 'erp-export-' || (g % 12) || '.csv',
       jsonb_build_object('sku', 'SKU-' || lpad((1 + g % {n["products"]})::text, 8, '0'), 'qty', g % 50, 'note', repeat('x', (g % 40)::int)),
       timestamptz '2024-06-01 00:00:00+00' + (g || ' seconds')::interval
FROM generate_series(1::bigint, {n["raw"]}) g;
"""


def wpcs(scale: int) -> str:
    n = _sizes("wpcs", scale)
    return f"""
SELECT setseed(0.73);
CREATE SCHEMA hosting;
CREATE TYPE hosting.site_state AS ENUM ('provisioning', 'live', 'suspended', 'archived');
CREATE TABLE hosting.plan (
  id smallserial PRIMARY KEY,
  name text NOT NULL UNIQUE,
  price_eur numeric(8,2) NOT NULL,
  limits jsonb NOT NULL
);
CREATE TABLE hosting.customer (
  id bigserial PRIMARY KEY,
  "companyName" text NOT NULL,
  email text NOT NULL,
  vat_ids text[],
  created_at timestamptz NOT NULL
);
CREATE TABLE hosting.site (
  id bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES hosting.customer(id),
  plan_id smallint NOT NULL REFERENCES hosting.plan(id),
  domain text NOT NULL UNIQUE,
  state hosting.site_state NOT NULL,
  php_version text NOT NULL,
  plugins text[] NOT NULL,
  settings jsonb NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX site_customer_idx ON hosting.site (customer_id);
CREATE TABLE hosting.backup (
  id bigserial PRIMARY KEY,
  site_id bigint NOT NULL REFERENCES hosting.site(id) ON DELETE CASCADE,
  taken_at timestamptz NOT NULL,
  size_bytes bigint NOT NULL,
  manifest jsonb NOT NULL,
  checksum bytea NOT NULL
);
CREATE INDEX backup_site_taken_idx ON hosting.backup (site_id, taken_at DESC);
-- WordPress-style options table WITHOUT a primary key
CREATE TABLE public.wp_options (
  option_name text NOT NULL,
  option_value text,
  autoload boolean NOT NULL DEFAULT true
);

INSERT INTO hosting.plan (name, price_eur, limits) VALUES
  ('starter', 9.95, '{{"sites": 1, "storage_gb": 10}}'),
  ('business', 24.95, '{{"sites": 5, "storage_gb": 50}}'),
  ('agency', 79.00, '{{"sites": 25, "storage_gb": 250}}'),
  ('enterprise', 249.00, '{{"sites": null, "storage_gb": 1000}}');

INSERT INTO hosting.customer ("companyName", email, vat_ids, created_at)
SELECT 'Klant ' || g || ' B.V.', 'ops' || g || '@klant.example.test', ARRAY['NL' || lpad((g * 7)::text, 9, '0') || 'B01'],
       timestamptz '2021-05-01 00:00:00+00' + (g || ' hours')::interval
FROM generate_series(1::bigint, {n["customers"]}) g;

INSERT INTO hosting.site (customer_id, plan_id, domain, state, php_version, plugins, settings, created_at)
SELECT 1 + (g * 7919) % {n["customers"]}, 1 + g % 4, 'site' || g || '.wpcs.example.test',
       (ARRAY['provisioning','live','live','live','suspended','archived']::hosting.site_state[])[1 + g % 6],
       (ARRAY['8.1','8.2','8.3'])[1 + g % 3],
       (ARRAY['woocommerce','yoast','wpml','akismet','wordfence'])[1:(1 + g % 5)],
       jsonb_build_object('cdn', g % 2 = 0, 'cache_ttl', 60 * (1 + g % 10), 'locale', 'nl_NL'),
       timestamptz '2021-06-01 00:00:00+00' + (g || ' hours')::interval
FROM generate_series(1::bigint, {n["sites"]}) g;

INSERT INTO hosting.backup (site_id, taken_at, size_bytes, manifest, checksum)
SELECT 1 + (g * 31) % {n["sites"]}, timestamptz '2024-01-01 00:00:00+00' + (g || ' minutes')::interval * 11,
       (random() * 5e9)::bigint,
       jsonb_build_object('files', g % 5000, 'db_tables', 12 + g % 30, 'incremental', g % 7 <> 0),
       sha256(('backup-' || g)::bytea)
FROM generate_series(1::bigint, {n["backups"]}) g;

INSERT INTO public.wp_options (option_name, option_value, autoload)
SELECT (ARRAY['siteurl','home','blogname','admin_email','active_plugins','cron','theme_mods'])[1 + g % 7] || '_' || g,
       repeat(md5(g::text), (1 + g % 4)::int), g % 3 <> 0
FROM generate_series(1::bigint, {n["options"]}) g;
"""


def keycloak(scale: int, smoke_secret: str) -> str:
    n = _sizes("keycloak", scale)
    secret = smoke_secret.replace("'", "''")
    return f"""
-- A Keycloak-like schema (table and column names as in Keycloak's own database).
CREATE TABLE public.realm (
  id varchar(36) PRIMARY KEY,
  name varchar(255) NOT NULL UNIQUE,
  enabled boolean NOT NULL DEFAULT true,
  ssl_required varchar(255),
  access_token_lifespan integer,
  login_theme varchar(255)
);
CREATE TABLE public.realm_attribute (
  name varchar(255) NOT NULL,
  realm_id varchar(36) NOT NULL REFERENCES public.realm(id),
  value text,
  PRIMARY KEY (name, realm_id)
);
CREATE TABLE public.client (
  id varchar(36) PRIMARY KEY,
  client_id varchar(255) NOT NULL,
  name varchar(255),
  realm_id varchar(36) NOT NULL REFERENCES public.realm(id),
  enabled boolean NOT NULL DEFAULT true,
  secret varchar(255),
  public_client boolean NOT NULL DEFAULT false,
  service_accounts_enabled boolean NOT NULL DEFAULT false,
  protocol varchar(255) DEFAULT 'openid-connect',
  root_url varchar(255),
  redirect_uris text[],
  UNIQUE (realm_id, client_id)
);
CREATE TABLE public.keycloak_role (
  id varchar(36) PRIMARY KEY,
  client_realm_constraint varchar(255),
  client_role boolean NOT NULL DEFAULT false,
  description varchar(255),
  name varchar(255) NOT NULL,
  realm_id varchar(255) REFERENCES public.realm(id),
  client varchar(36) REFERENCES public.client(id)
);
CREATE TABLE public.keycloak_group (
  id varchar(36) PRIMARY KEY,
  name varchar(255) NOT NULL,
  parent_group varchar(36) NOT NULL DEFAULT ' ',
  realm_id varchar(36) NOT NULL REFERENCES public.realm(id)
);
CREATE TABLE public.user_entity (
  id varchar(36) PRIMARY KEY,
  email varchar(255),
  email_verified boolean NOT NULL DEFAULT false,
  enabled boolean NOT NULL DEFAULT true,
  first_name varchar(255),
  last_name varchar(255),
  realm_id varchar(255) NOT NULL REFERENCES public.realm(id),
  username varchar(255) NOT NULL,
  created_timestamp bigint,
  service_account_client_link varchar(255),
  UNIQUE (realm_id, username)
);
CREATE INDEX idx_user_email ON public.user_entity (email);
CREATE TABLE public.user_role_mapping (
  role_id varchar(255) NOT NULL REFERENCES public.keycloak_role(id),
  user_id varchar(36) NOT NULL REFERENCES public.user_entity(id),
  PRIMARY KEY (role_id, user_id)
);
CREATE TABLE public.user_group_membership (
  group_id varchar(36) NOT NULL REFERENCES public.keycloak_group(id),
  user_id varchar(36) NOT NULL REFERENCES public.user_entity(id),
  PRIMARY KEY (group_id, user_id)
);
CREATE TABLE public.credential (
  id varchar(36) PRIMARY KEY,
  type varchar(255),
  user_id varchar(36) REFERENCES public.user_entity(id),
  created_date bigint,
  secret_data text,
  credential_data text,
  priority integer
);

INSERT INTO public.realm (id, name, ssl_required, access_token_lifespan, login_theme) VALUES
  (md5('realm:master')::uuid::text, 'master', 'external', 60, 'keycloak'),
  (md5('realm:sevensa')::uuid::text, 'sevensa', 'external', 300, 'sevensa');
INSERT INTO public.realm_attribute (name, realm_id, value)
SELECT a, r.id, v FROM public.realm r,
  (VALUES ('displayName', 'Sevensa'), ('frontendUrl', ''), ('bruteForceProtected', 'true')) AS t(a, v);

INSERT INTO public.client (id, client_id, name, realm_id, secret, public_client, service_accounts_enabled, root_url, redirect_uris)
SELECT md5('client:' || r || ':' || c)::uuid::text, c, initcap(replace(c, '-', ' ')), md5('realm:' || r)::uuid::text,
       CASE WHEN pub THEN NULL WHEN c = 'migrator-smoke' THEN '{secret}' ELSE md5(random()::text) END,
       pub, NOT pub, url, CASE WHEN url IS NULL THEN NULL ELSE ARRAY[url || '/*'] END
FROM (VALUES
  ('master', 'admin-cli', true, NULL),
  ('master', 'security-admin-console', true, '/admin/master/console'),
  ('master', 'broker', false, NULL),
  ('sevensa', 'account', true, '/realms/sevensa/account'),
  ('sevensa', 'rentguy-api', false, 'http://api.rentguy.sevensa.test'),
  ('sevensa', 'psra-api', false, 'http://api.psra.sevensa.test'),
  ('sevensa', 'wpcs-api', false, 'http://api.wpcs.sevensa.test'),
  ('sevensa', 'n8n', false, 'http://n8n.sevensa.test'),
  ('sevensa', 'grafana', false, 'http://grafana.sevensa.test'),
  ('sevensa', 'migrator-smoke', false, NULL)
) AS t(r, c, pub, url);

INSERT INTO public.keycloak_role (id, name, description, realm_id, client_realm_constraint)
SELECT md5('role:' || r || ':' || n)::uuid::text, n, d, md5('realm:' || r)::uuid::text, md5('realm:' || r)::uuid::text
FROM (VALUES
  ('master', 'admin', 'role_admin'), ('master', 'create-realm', 'role_create-realm'),
  ('master', 'offline_access', 'role_offline-access'),
  ('sevensa', 'offline_access', 'role_offline-access'), ('sevensa', 'uma_authorization', 'role_uma_authorization'),
  ('sevensa', 'rentguy-admin', 'RentGuy administrators'), ('sevensa', 'rentguy-user', 'RentGuy users'),
  ('sevensa', 'psra-analyst', 'PSRA-LTSD analysts'), ('sevensa', 'wpcs-operator', 'WPCS operators'),
  ('sevensa', 'ai-user', 'AI orchestration users')
) AS t(r, n, d);

INSERT INTO public.keycloak_group (id, name, realm_id)
SELECT md5('group:' || g)::uuid::text, g, md5('realm:sevensa')::uuid::text
FROM unnest(ARRAY['admins', 'customers', 'operators', 'analysts']) g;

INSERT INTO public.user_entity (id, email, email_verified, first_name, last_name, realm_id, username, created_timestamp)
VALUES (md5('user:master:admin')::uuid::text, NULL, false, NULL, NULL, md5('realm:master')::uuid::text, 'admin',
        1700000000000);
INSERT INTO public.user_entity (id, email, email_verified, enabled, first_name, last_name, realm_id, username, created_timestamp)
SELECT md5('user:' || g)::uuid::text, 'user' || g || '@sevensa.test', g % 5 <> 0, g % 23 <> 0,
       (ARRAY['Anna','Bram','Chloé','Daan','Eva','Finn','Gül'])[1 + g % 7], 'Jansen-' || g,
       md5('realm:sevensa')::uuid::text, 'user' || lpad(g::text, 6, '0'), 1700000000000 + g * 60000
FROM generate_series(1::bigint, {n["users"]}) g;

INSERT INTO public.user_role_mapping (role_id, user_id)
SELECT md5('role:sevensa:' || (ARRAY['rentguy-user','psra-analyst','wpcs-operator','ai-user'])[1 + g % 4])::uuid::text,
       md5('user:' || g)::uuid::text
FROM generate_series(1::bigint, {n["users"]}) g;
INSERT INTO public.user_role_mapping (role_id, user_id)
VALUES (md5('role:master:admin')::uuid::text, md5('user:master:admin')::uuid::text);

INSERT INTO public.user_group_membership (group_id, user_id)
SELECT md5('group:' || (ARRAY['admins','customers','customers','operators','analysts'])[1 + g % 5])::uuid::text,
       md5('user:' || g)::uuid::text
FROM generate_series(1::bigint, {n["users"]}) g;

INSERT INTO public.credential (id, type, user_id, created_date, secret_data, credential_data, priority)
SELECT md5('cred:' || u.id)::uuid::text, 'password', u.id, u.created_timestamp,
       json_build_object('value', encode(sha256(('pw' || u.id)::bytea), 'base64'), 'salt', md5(u.id))::text,
       '{{"hashIterations":27500,"algorithm":"pbkdf2-sha256"}}', 10
FROM public.user_entity u;
"""


def script(db: str, scale: int, smoke_secret: str = "") -> str:
    """The whole seed transaction for ``db``, ending with the marker row."""
    body = {"rentguy": rentguy, "psra": psra, "wpcs": wpcs}.get(db)
    sql = body(scale) if body else keycloak(scale, smoke_secret)
    return (f"\\set ON_ERROR_STOP on\nBEGIN;\n{MARKER}\n{sql}\n"
            f"INSERT INTO public._sandbox_seed (db, scale) VALUES ('{db}', {int(scale)});\nCOMMIT;\nANALYZE;\n")
