"""A small source database with every shape the copy must carry (and the bench's mixed types)."""

from __future__ import annotations

SEED = r"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_owner') THEN CREATE ROLE app_owner NOLOGIN; END IF;
END $$;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA "Sales" AUTHORIZATION app_owner;
CREATE SCHEMA inventory AUTHORIZATION app_owner;
CREATE TYPE "Sales"."Status" AS ENUM ('new', 'paid', 'Shipped Out');
CREATE TABLE "Sales"."Customer" (
  "Id" serial PRIMARY KEY,
  "Name" text NOT NULL,
  tags text[],
  meta jsonb,
  photo bytea,
  created timestamptz NOT NULL DEFAULT now(),
  status "Sales"."Status" NOT NULL DEFAULT 'new',
  moods "Sales"."Status"[],
  score double precision,
  CONSTRAINT name_not_empty CHECK ("Name" <> '')
);
CREATE TABLE "Sales"."Order Line" (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id int NOT NULL REFERENCES "Sales"."Customer" ("Id"),
  amount numeric(12, 2),
  total numeric GENERATED ALWAYS AS (amount * 1.21) STORED,
  span interval,
  at timestamptz
);
CREATE INDEX order_by_customer ON "Sales"."Order Line" (customer_id);
CREATE INDEX customer_meta ON "Sales"."Customer" USING gin (meta);
CREATE TABLE inventory.items (sku text PRIMARY KEY, qty int, dims int[], attrs jsonb, uid uuid UNIQUE);
CREATE TABLE public.audit_log (at timestamptz, who text, what text);  -- no primary key
CREATE TABLE public.empty_one (id int PRIMARY KEY);
CREATE TABLE public."MixedCase" ("Key" text PRIMARY KEY, "Value" bytea);
CREATE SEQUENCE public.ticket_seq START 100;
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN NEW.at := coalesce(NEW.at, now()); RETURN NEW; END $f$;
CREATE TRIGGER order_touch BEFORE INSERT ON "Sales"."Order Line" FOR EACH ROW EXECUTE FUNCTION public.touch();

INSERT INTO "Sales"."Customer" ("Name", tags, meta, photo, created, status, moods, score)
SELECT 'Customer ' || g || CASE WHEN g % 7 = 0 THEN E' with "quotes", tabs\t and\nnewlines \\ ' ELSE '' END,
       ARRAY['t' || g, NULL, 'x,y'], jsonb_build_object('n', g, 'nested', jsonb_build_object('a', ARRAY[g, g+1])),
       decode(md5(g::text), 'hex') || '\x00ff'::bytea, timestamptz '2024-01-01 00:00:00+02' + g * interval '37 minutes',
       (ARRAY['new', 'paid', 'Shipped Out']::"Sales"."Status"[])[1 + g % 3], ARRAY['paid', 'Shipped Out']::"Sales"."Status"[],
       CASE WHEN g % 11 = 0 THEN 'NaN'::float8 ELSE g / 3.0 END
FROM generate_series(1, 1500) g;
INSERT INTO "Sales"."Order Line" (customer_id, amount, span, at)
SELECT 1 + g % 1500, g * 1.25, g * interval '1 second', NULL FROM generate_series(1, 4000) g;
INSERT INTO inventory.items SELECT 'sku-' || g, g, ARRAY[g, g * 2, g * 3], '{"k": [1, 2, {"z": null}]}', gen_random_uuid()
FROM generate_series(1, 800) g;
INSERT INTO public.audit_log SELECT now(), 'user' || (g % 5), 'did ' || g FROM generate_series(1, 600) g;
INSERT INTO public.audit_log SELECT now(), 'dup', 'same row' FROM generate_series(1, 3);  -- duplicate rows, no PK
INSERT INTO public."MixedCase" VALUES ('a', '\xdeadbeef'), ('B', NULL), ('c d', '');
SELECT setval('public.ticket_seq', 4242);
ALTER TABLE "Sales"."Customer" OWNER TO app_owner;
ALTER TABLE "Sales"."Order Line" OWNER TO app_owner;
ALTER TABLE inventory.items OWNER TO app_owner;
ALTER SEQUENCE public.ticket_seq OWNER TO app_owner;
"""


def seed(cluster: object, database: str) -> None:
    cluster.create_db(database)  # type: ignore[attr-defined]
    cluster.sql(SEED, database)  # type: ignore[attr-defined]
