"""Unit tests: the role names in pg_dump's statements are mapped, and list-valued settings keep their items."""

from __future__ import annotations

from migrator.steps.postgres import pg_schema as schema
from migrator.steps.postgres.pg_whole import set_clause, split_list

DUMP = '''ALTER TABLE "app"."t" OWNER TO "old";
GRANT SELECT,INSERT ON TABLE "app"."TO x" TO "old";
GRANT ALL ON FUNCTION "app"."f"() TO "old", "other" WITH GRANT OPTION;
REVOKE ALL ON SCHEMA "public" FROM PUBLIC;
REVOKE ALL ON TABLE "app"."t" FROM "old";
GRANT SELECT ON LARGE OBJECT 42 TO "old";
ALTER DEFAULT PRIVILEGES FOR ROLE "old" IN SCHEMA "app" GRANT SELECT ON TABLES  TO "old";
ALTER DEFAULT PRIVILEGES FOR ROLE "old" REVOKE ALL ON FUNCTIONS  FROM PUBLIC;
SET SESSION AUTHORIZATION "old";
CREATE POLICY "p" ON "app"."t" FOR SELECT TO "old", PUBLIC USING (("a" = 'TO "old"'));
CREATE USER MAPPING FOR "old" SERVER "s";
COMMENT ON TABLE "app"."t" IS 'GRANT x TO "old";';
'''


def test_every_role_reference_is_mapped_and_nothing_else() -> None:
    assert schema.owners_in(DUMP) == {"old", "other"}
    out = schema.prepare(DUMP, {"old": "New Role"}, None).splitlines()
    assert out[0] == 'ALTER TABLE "app"."t" OWNER TO "New Role";'
    assert out[1] == 'GRANT SELECT,INSERT ON TABLE "app"."TO x" TO "New Role";'
    assert out[2] == 'GRANT ALL ON FUNCTION "app"."f"() TO "New Role", "other" WITH GRANT OPTION;'
    assert out[3] == 'REVOKE ALL ON SCHEMA "public" FROM PUBLIC;'
    assert out[4].endswith('FROM "New Role";') and out[5].endswith('TO "New Role";')
    assert out[6] == ('ALTER DEFAULT PRIVILEGES FOR ROLE "New Role" IN SCHEMA "app" GRANT SELECT ON TABLES  TO '
                      '"New Role";')
    assert out[7] == 'ALTER DEFAULT PRIVILEGES FOR ROLE "New Role" REVOKE ALL ON FUNCTIONS  FROM PUBLIC;'
    assert out[8] == 'SET SESSION AUTHORIZATION "New Role";'
    # The policy's roles are mapped, its expression is not touched.
    assert out[9] == 'CREATE POLICY "p" ON "app"."t" FOR SELECT TO "New Role", PUBLIC USING (("a" = \'TO "old"\'));'
    assert out[10] == 'CREATE USER MAPPING FOR "New Role" SERVER "s";'
    assert out[11] == DUMP.splitlines()[11]  # a comment's text is not a grant


def test_list_settings_keep_their_items() -> None:
    assert split_list('app, "$user", public') == ["app", "$user", "public"]
    assert split_list('"a ""b"", c"') == ['a "b", c']
    assert set_clause("search_path", 'app, "$user", public') == "SET \"search_path\" TO 'app', '$user', 'public'"
    assert set_clause("statement_timeout", "42s") == "SET \"statement_timeout\" TO '42s'"
    assert set_clause("app.tenant", "acme") == "SET \"app\".\"tenant\" TO 'acme'"
