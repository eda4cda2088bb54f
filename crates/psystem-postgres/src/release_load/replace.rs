//! What a `replace` keeps of the old table: the statements that re-create the user's objects on the new one.
//!
//! Everything is read from the catalogs (`pg_constraint`, `pg_index`, `pg_attribute`, `pg_class.relacl`,
//! `pg_policies`, `pg_trigger`, `pg_depend`) and rendered server-side with `format('%I', …)`/`%L` and
//! `pg_get_constraintdef`/`pg_get_indexdef`/`pg_get_triggerdef`/`pg_get_expr`, so names and literals are quoted
//! by PostgreSQL itself. The statements name the table by its (target) name, so they are run after the old table
//! is dropped and the staging table renamed to the target name. The sequence is in `docs/LOAD_MODES.md`.

use psystem_core::TableRef;
use sqlx::{PgConnection, Row};

use crate::ident::{ident_with_suffix, quote_ident, quote_table};
use crate::DestinationError;

/// The statements that carry the user's objects from the old table to the new one.
#[derive(Debug, Default)]
pub(crate) struct Preserved {
    /// Run before the old table is dropped: drop the foreign keys of other tables that point to it, detach the
    /// sequences owned by its columns.
    pub before: Vec<String>,
    /// Run after the staging table has been renamed to the target name, in order.
    pub after: Vec<String>,
}

/// The views (`schema.name`) that depend on the table `oid`.
pub(crate) async fn dependent_views(
    conn: &mut PgConnection,
    oid: i64,
    table: &TableRef,
) -> Result<Vec<String>, DestinationError> {
    sqlx::query_scalar(
        "SELECT DISTINCT v.oid::regclass::text FROM pg_depend d \
         JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class \
         WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
         AND d.refobjid = $1::bigint::oid AND r.ev_class <> $1::bigint::oid ORDER BY 1",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(format!(
        "looking up the views that depend on {table}"
    )))
}

/// Reads the user's objects of the old table `oid` (named `table`) and renders the statements that re-create
/// them. `release_columns` are the columns of the release (NOT NULL is restored only on those);
/// `primary_key` is the load's key (it replaces the old primary key when the columns differ, and is added when the
/// old table had none).
pub(crate) async fn capture(
    conn: &mut PgConnection,
    oid: i64,
    table: &TableRef,
    release_columns: &[String],
    primary_key: &[String],
) -> Result<Preserved, DestinationError> {
    let t = quote_table(table);
    let ctx = |what: &str| format!("reading the {what} of {table} to keep them across the replace");
    let mut p = Preserved::default();

    // Owner and row-level security switches.
    let row = sqlx::query(
        "SELECT pg_get_userbyid(c.relowner)::text AS owner, c.relrowsecurity, c.relforcerowsecurity \
         FROM pg_class c WHERE c.oid = $1::bigint::oid",
    )
    .bind(oid)
    .fetch_one(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("owner")))?;
    let owner: String = row.get("owner");
    let current_user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("owner")))?;
    if owner != current_user {
        p.after
            .push(format!("ALTER TABLE {t} OWNER TO {}", quote_ident(&owner)));
    }
    let rls: bool = row.get("relrowsecurity");
    let force_rls: bool = row.get("relforcerowsecurity");

    // Constraints: primary key, unique, exclusion, check, foreign keys (in that order).
    let rows = sqlx::query(
        "SELECT c.contype::text AS kind, c.conname::text AS name, \
         format('ALTER TABLE %s ADD CONSTRAINT %I %s', $2::text, c.conname, pg_get_constraintdef(c.oid)) AS stmt, \
         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) k JOIN pg_attribute a \
               ON a.attrelid = c.conrelid AND a.attnum = k ORDER BY 1) AS cols \
         FROM pg_constraint c WHERE c.conrelid = $1::bigint::oid AND c.contype IN ('p', 'u', 'x', 'c', 'f') \
         ORDER BY CASE c.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3 ELSE 4 END, c.conname",
    )
    .bind(oid)
    .bind(&t)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("constraints")))?;
    let mut sorted_pk: Vec<String> = primary_key.to_vec();
    sorted_pk.sort();
    let pk_list = primary_key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let mut had_pk = false;
    let mut constraints = Vec::new();
    for row in &rows {
        let kind: String = row.get("kind");
        let name: String = row.get("name");
        let stmt: String = row.get("stmt");
        let mut cols: Vec<String> = row.get("cols");
        cols.sort();
        if kind == "p" {
            had_pk = true;
            if !primary_key.is_empty() && cols != sorted_pk {
                constraints.push(format!(
                    "ALTER TABLE {t} ADD CONSTRAINT {} PRIMARY KEY ({pk_list})",
                    quote_ident(&name)
                ));
                continue;
            }
        }
        constraints.push(stmt);
    }
    if !had_pk && !primary_key.is_empty() {
        constraints.insert(
            0,
            format!(
                "ALTER TABLE {t} ADD CONSTRAINT {} PRIMARY KEY ({pk_list})",
                quote_ident(&ident_with_suffix(&table.name, "_pkey"))
            ),
        );
    }
    p.after.extend(constraints);

    // Indexes that do not back a constraint, with their comments.
    let rows = sqlx::query(
        "SELECT pg_get_indexdef(i.indexrelid) AS def, \
         CASE WHEN obj_description(i.indexrelid, 'pg_class') IS NOT NULL THEN \
           format('COMMENT ON INDEX %I.%I IS %L', $2::text, ic.relname, obj_description(i.indexrelid, 'pg_class')) END AS comment \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1::bigint::oid \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid \
                         AND c.conrelid = $1::bigint::oid AND c.contype IN ('p', 'u', 'x')) \
         ORDER BY ic.relname",
    )
    .bind(oid)
    .bind(&table.schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("indexes")))?;
    for row in &rows {
        p.after.push(row.get("def"));
        if let Some(c) = row.get::<Option<String>, _>("comment") {
            p.after.push(c);
        }
    }

    // NOT NULL of columns the release still has (primary-key columns get it from the key).
    let rows = sqlx::query(
        "SELECT a.attname::text AS name, format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', $2::text, a.attname) AS stmt \
         FROM pg_attribute a WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped \
         AND a.attnotnull ORDER BY a.attnum",
    )
    .bind(oid)
    .bind(&t)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("NOT NULL columns")))?;
    for row in &rows {
        let name: String = row.get("name");
        if release_columns.contains(&name) && !primary_key.contains(&name) {
            p.after.push(row.get("stmt"));
        }
    }

    // Column defaults, and the sequences owned by the old table's columns (kept, owned by the new columns).
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', $2::text, a.attname, pg_get_expr(d.adbin, d.adrelid)) \
         FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
         WHERE d.adrelid = $1::bigint::oid AND a.attgenerated = '' AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .bind(&t)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("column defaults")))?;
    p.after.extend(rows);
    let rows = sqlx::query(
        "SELECT format('ALTER SEQUENCE %s OWNED BY NONE', s.oid::regclass) AS detach, \
         format('ALTER SEQUENCE %s OWNED BY %s.%I', s.oid::regclass, $2::text, a.attname) AS attach \
         FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
         WHERE d.refobjid = $1::bigint::oid AND d.classid = 'pg_class'::regclass \
         AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'",
    )
    .bind(oid)
    .bind(&t)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("owned sequences")))?;
    for row in &rows {
        p.before.push(row.get("detach"));
        p.after.push(row.get("attach"));
    }

    // Comments on the table and its columns.
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT format('COMMENT ON TABLE %s IS %L', $2::text, obj_description($1::bigint::oid, 'pg_class')) \
         WHERE obj_description($1::bigint::oid, 'pg_class') IS NOT NULL \
         UNION ALL \
         SELECT format('COMMENT ON COLUMN %s.%I IS %L', $2::text, a.attname, col_description(a.attrelid, a.attnum)) \
         FROM pg_attribute a WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped \
         AND col_description(a.attrelid, a.attnum) IS NOT NULL",
    )
    .bind(oid)
    .bind(&t)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("comments")))?;
    p.after.extend(rows);

    // Grants on the table and on its columns (the owner's own privileges come with ownership).
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT format('GRANT %s ON TABLE %s TO %s%s', g.privilege_type, $2::text, \
           CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)::text) END, \
           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
         FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) g \
         WHERE c.oid = $1::bigint::oid AND g.grantee <> c.relowner \
         UNION ALL \
         SELECT format('GRANT %s (%I) ON TABLE %s TO %s%s', g.privilege_type, a.attname, $2::text, \
           CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)::text) END, \
           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid CROSS JOIN LATERAL aclexplode(a.attacl) g \
         WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped AND g.grantee <> c.relowner",
    )
    .bind(oid)
    .bind(&t)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("grants")))?;
    p.after.extend(rows);

    // Row-level security and its policies.
    if rls {
        p.after
            .push(format!("ALTER TABLE {t} ENABLE ROW LEVEL SECURITY"));
    }
    if force_rls {
        p.after
            .push(format!("ALTER TABLE {t} FORCE ROW LEVEL SECURITY"));
    }
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.policyname, $3::text, p.permissive, p.cmd, \
           (SELECT string_agg(CASE WHEN r::text = 'public' THEN 'PUBLIC' ELSE quote_ident(r::text) END, ', ') \
            FROM unnest(p.roles) r), \
           COALESCE(' USING (' || p.qual || ')', ''), COALESCE(' WITH CHECK (' || p.with_check || ')', '')) \
         FROM pg_policies p WHERE p.schemaname = $1 AND p.tablename = $2 ORDER BY p.policyname",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .bind(&t)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("row-level security policies")))?;
    p.after.extend(rows);

    // User triggers.
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = $1::bigint::oid AND NOT tgisinternal ORDER BY tgname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("triggers")))?;
    p.after.extend(rows);

    // Foreign keys of other tables that point to this one: dropped before, re-created (and validated) after.
    let rows = sqlx::query(
        "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop_stmt, \
         format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid)) AS add_stmt \
         FROM pg_constraint c WHERE c.confrelid = $1::bigint::oid AND c.conrelid <> $1::bigint::oid AND c.contype = 'f' \
         ORDER BY c.conname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("foreign keys of other tables")))?;
    for row in &rows {
        p.before.push(row.get("drop_stmt"));
        p.after.push(row.get("add_stmt"));
    }
    Ok(p)
}
