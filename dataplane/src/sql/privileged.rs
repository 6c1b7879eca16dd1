//! Analyse stage: the one place that says which functions and settings make a statement
//! privileged (or at least a write). `facts` consults it for every function named anywhere in
//! the tree (select list, CTE, subquery, argument of another call, FROM clause, CALL) and for
//! every SET, so a wrapped act is as visible as a bare one.
//!
//! Matching is on the last part of the name, lower-cased: `pg_catalog.pg_read_file` and
//! `"PG_READ_FILE"` both count. Over-matching a user function of the same name costs a review,
//! under-matching a server function costs a breach.

/// Functions that reach outside the database's data: server files, other servers, server
/// programs, other sessions, the server's configuration, or SQL hidden inside a string.
const PRIVILEGED_EXACT: &[&str] = &[
    // Server files (PostgreSQL core and adminpack).
    "lo_import",
    "lo_export",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "pg_logdir_ls",
    // Server-side role and configuration changes.
    "set_config",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_signal_backend",
    "pg_log_backend_memory_contexts",
    "pg_replication_origin_create",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_drop_replication_slot",
    "pg_logical_emit_message",
    // SQL or table names inside a string argument: the facts cannot see what they read.
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
    // MySQL: server files and user-defined shell functions.
    "load_file",
    "sys_exec",
    "sys_eval",
    "sys_get",
    "sys_set",
];

/// Prefixes of function families with the same reach.
const PRIVILEGED_PREFIX: &[&str] = &[
    "dblink",      // dblink, dblink_exec, dblink_connect, ... (another server, any SQL)
    "pg_ls_",      // pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
    "pg_file_",    // adminpack: pg_file_write, pg_file_rename, pg_file_unlink, pg_file_sync
    "pg_read_",    // pg_read_file, pg_read_binary_file and any later sibling
    "pg_execute_", // pg_execute_server_program-style helpers
];

/// Functions that change data although they appear in a SELECT.
const WRITE_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_notify",
];

/// Settings whose change is privileged: they change who the session is, or how the server
/// lexes later statements (so the gateway's fingerprints and facts would no longer match what
/// the server runs).
const PRIVILEGED_SETTINGS: &[&str] = &[
    "role",
    "session_authorization",
    "standard_conforming_strings",
    "backslash_quote",
    "session_replication_role",
    "sql_mode",
    "character_set_client",
    "character_set_connection",
];

/// Encoding settings: only a bare, ASCII-safe encoding name is harmless. A quoted value is
/// hidden by the fingerprint, so it cannot be judged and counts as privileged.
const ENCODING_SETTINGS: &[&str] = &["client_encoding", "names", "charset", "character set"];

/// Client encodings whose multi-byte characters can contain `\` or other ASCII bytes, so the
/// gateway (reading bytes) and the server (reading characters) would split strings differently.
const UNSAFE_ENCODINGS: &[&str] = &[
    "sjis",
    "shift_jis",
    "shift_jis_2004",
    "mskanji",
    "cp932",
    "win932",
    "big5",
    "win950",
    "gbk",
    "cp936",
    "win936",
    "gb18030",
    "uhc",
    "win949",
    "johab",
];

fn last_part(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// True if calling `name` (any qualification, any case) is privileged.
pub(crate) fn is_privileged_function(name: &str) -> bool {
    let base = last_part(name).to_ascii_lowercase();
    PRIVILEGED_EXACT.contains(&base.as_str())
        || PRIVILEGED_PREFIX.iter().any(|p| base.starts_with(p))
}

/// True if calling `name` writes.
pub(crate) fn is_write_function(name: &str) -> bool {
    let base = last_part(name).to_ascii_lowercase();
    WRITE_FUNCTIONS.contains(&base.as_str())
}

/// True if setting `name` is privileged whatever the value (`name` without `@@`/scope).
pub(crate) fn is_privileged_setting(name: &str) -> bool {
    let base = last_part(name).trim_start_matches('@').to_ascii_lowercase();
    PRIVILEGED_SETTINGS.contains(&base.as_str())
}

/// True if `name` sets the client encoding (its value then decides).
pub(crate) fn is_encoding_setting(name: &str) -> bool {
    let base = last_part(name).trim_start_matches('@').to_ascii_lowercase();
    ENCODING_SETTINGS.contains(&base.as_str())
}

/// True if `encoding` (a bare name) is one the gateway cannot lex safely.
pub(crate) fn is_unsafe_encoding(encoding: &str) -> bool {
    let e = encoding.to_ascii_lowercase().replace('-', "_");
    UNSAFE_ENCODINGS.contains(&e.as_str())
}
