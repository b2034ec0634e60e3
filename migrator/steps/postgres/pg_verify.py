"""postgres.verify: the parity gate between source and target, computed inside each server.

Per table: row count and a sum of 64-bit row hashes (order-independent, so no sort and no data pulled
out); sequences (target at least the source); counts of constraints, indexes and triggers; large objects
(count and an md5 over their contents in oid order); each materialized view's populated state and, when
populated, its rows like a table's; the database's own settings (ALTER DATABASE ... SET). A mismatch
fails the gate and names what differs. Writers must be frozen (or replication caught up) first.
"""

from __future__ import annotations

from typing import Any

from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import Check, Plan, Step, StrictModel, step_type
from migrator.steps.postgres import pg_catalog as cat
from migrator.steps.postgres import pg_schema as schema
from migrator.steps.postgres.pg_common import SourceParams, TargetParams, source_of, target_conn


class VerifyParams(StrictModel):
    source: SourceParams
    target: TargetParams
    # Mismatches are permanent by default (the data differs); true retries until the gate's deadline.
    retry: bool = False
    # False while logical replication runs: sequences are not replicated, catchup sets them.
    sequences: bool = True


def compare(source_q: cat.Query, target_q: cat.Query, sequences: bool = True) -> tuple[list[str], dict[str, Any]]:
    """Differences (one line each) and figures for the report."""
    problems: list[str] = []
    src_tabs, dst_tabs = cat.tables(source_q), cat.tables(target_q)
    src_names, dst_names = {t.label for t in src_tabs}, {t.label for t in dst_tabs}
    if src_names - dst_names:
        problems.append(f"missing on the target: {', '.join(sorted(src_names - dst_names))}")
    if dst_names - src_names:
        problems.append(f"only on the target: {', '.join(sorted(dst_names - src_names))}")
    common = [t for t in src_tabs if t.label in dst_names]
    src_d, dst_d = cat.digests(source_q, common), cat.digests(target_q, common)
    differ = []
    for t in common:
        (sn, sh), (dn, dh) = src_d[t.label], dst_d[t.label]
        if sn != dn:
            differ.append(f"{t.label} (rows {sn} vs {dn})")
        elif sh != dh:
            differ.append(f"{t.label} (same {sn} rows, different content)")
    if differ:
        problems.append(f"tables that differ: {', '.join(differ)}")
    src_s, dst_s = cat.sequences(source_q), cat.sequences(target_q)
    behind = [f"{k} ({dst_s.get(k)} < {v})" for k, v in src_s.items()
              if v is not None and (dst_s.get(k) is None or int(dst_s[k] or 0) < v)]
    if behind and sequences:
        problems.append(f"sequences behind the source: {', '.join(behind)}")
    src_st, dst_st = cat.structure(source_q), cat.structure(target_q)
    diff_st = [f"{k} {src_st[k]} vs {dst_st.get(k, 0)}" for k in src_st if src_st[k] != dst_st.get(k, 0)]
    if diff_st:
        problems.append(f"structure differs: {', '.join(diff_st)}")
    extra, more = compare_whole(source_q, target_q)
    problems += extra
    figures = {"tables": len(common), "rows": sum(n for n, _ in src_d.values()), "sequences": len(src_s),
               **{k.replace(" ", "_"): v for k, v in src_st.items()}, **more}
    return problems, figures


def compare_whole(source_q: cat.Query, target_q: cat.Query) -> tuple[list[str], dict[str, Any]]:
    """Large objects (count and digest), materialized views (populated state, then rows like a table's),
    the database's own settings."""
    problems: list[str] = []
    (sn, sh), (dn, dh) = cat.large_objects(source_q), cat.large_objects(target_q)
    if sn != dn:
        problems.append(f"large objects: {sn} on the source, {dn} on the target")
    elif sh != dh:
        problems.append(f"large objects: same {sn}, different contents")
    src_mv, dst_mv = cat.matviews(source_q), cat.matviews(target_q)
    dst_by = {t.label: populated for t, populated in dst_mv.items()}
    missing = sorted(t.label for t in src_mv if t.label not in dst_by)
    if missing:
        problems.append(f"materialized views missing on the target: {', '.join(missing)}")
    state = [f"{t.label} ({'populated' if pop else 'not populated'} on the source, "
             f"{'populated' if dst_by[t.label] else 'not populated'} on the target)"
             for t, pop in src_mv.items() if t.label in dst_by and pop != dst_by[t.label]]
    if state:
        problems.append(f"materialized views: {', '.join(state)}")
    full = [t for t, pop in src_mv.items() if pop and dst_by.get(t.label)]
    s_d, d_d = cat.digests(source_q, full), cat.digests(target_q, full)
    differ = [f"{t.label} (rows {s_d[t.label][0]} vs {d_d[t.label][0]})" if s_d[t.label][0] != d_d[t.label][0]
              else f"{t.label} (same {s_d[t.label][0]} rows, different content)"
              for t in full if s_d[t.label] != d_d[t.label]]
    if differ:
        problems.append(f"materialized views that differ: {', '.join(differ)}")
    s_set = [(s.name, s.value) for s in cat.settings(source_q) if not s.role]
    d_set = [(s.name, s.value) for s in cat.settings(target_q) if not s.role]
    if sorted(s_set) != sorted(d_set):
        problems.append("database settings differ: source " + (", ".join(f"{n}={v}" for n, v in s_set) or "none")
                        + "; target " + (", ".join(f"{n}={v}" for n, v in d_set) or "none"))
    return problems, {"large_objects": sn, "materialized_views": len(src_mv), "database_settings": len(s_set)}


@step_type("postgres.verify")
class PostgresVerify(Step[VerifyParams]):
    """Prove the target holds the same rows, sequences and structure as the source."""

    def check(self) -> Check:
        return Check(True, "a verification changes nothing (the gate runs it)")

    def plan(self) -> Plan:
        p = self.params
        return Plan(changes=[f"compare {p.source.database} (source) with {p.target.database} on "
                             f"{p.target.endpoint}: per-table counts and content digests, sequences, structure, large objects, "
                             "materialized views, database settings"],
                    unknowns=["whether they match, until the digests are computed"])

    def apply(self) -> None:
        pass

    def verify(self) -> None:
        p = self.params
        source = source_of(self.ctx, p.source)
        problems, figures = compare(source.query, schema.query_of(target_conn(self.ctx, p.target)), p.sequences)
        self._figures = figures
        if problems:
            msg = f"{p.target.database}: " + "; ".join(problems)
            raise GateNotReady(msg) if p.retry else PermanentError(msg)

    def rollback(self) -> None:
        pass

    def report(self) -> dict[str, Any]:
        return dict(getattr(self, "_figures", {}))
