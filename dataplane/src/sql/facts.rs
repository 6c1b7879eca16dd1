//! Analyse stage, cache-miss path: statement facts from a full sqlparser parse, the `request`
//! part of the policy input (DESIGN.md, "The policy contract").
//!
//! The batch is split into statements by `lex.rs` (the server's lexical rules), and each one is
//! handed to sqlparser with its comments already gone and MySQL `/*! */` markers removed, so the
//! parser cannot disagree with the server about what is code. Each statement then parses on its
//! own: one unparseable statement does not hide the others, and it becomes a fact of its own
//! (`kind` from a keyword fallback, class privileged, `parse_error`) rather than a pass.
//!
//! Tables, columns and functions come from one `Visitor` walk over the whole tree (subqueries,
//! CTEs, joins, arguments, nested statements). CTE names are scoped the way PostgreSQL scopes
//! them, so `with customers as (select 1) select * from customers` reads no table but a real
//! table referenced where the CTE is not visible is still reported.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    AlterTableOperation, AssignmentTarget, ContextModifier, CopySource, CopyTarget, Expr,
    FunctionArg, FunctionArgExpr, FunctionArguments, GrantObjects, Ident, ObjectName,
    ObjectNamePart, ObjectType, Query, Reset, Select, SelectItem, Set, SetExpr, Statement,
    TableAlias, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Tokenizer;

use super::lex::{Lexer, Tok};
use super::{privileged, Dialect};

/// What a statement may do, from least to most restrictive; a batch is as restrictive as its
/// most restrictive statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Read,
    Transaction,
    Session,
    Write,
    Ddl,
    Dcl,
    Privileged,
}

/// Rank of a class: higher is more restrictive (same order as `Ord`).
pub fn class_rank(c: Class) -> u8 {
    c as u8
}

/// Facts about one statement batch (what the client sent in one go).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub statements: Vec<StatementFacts>,
    /// More than one statement in the batch.
    pub multi_statement: bool,
    /// The first statement's parse error, if any statement failed to parse.
    pub parse_error: Option<String>,
}

impl Facts {
    /// The most restrictive class in the batch; an empty batch (only comments or `;`) is a read.
    pub fn class(&self) -> Class {
        self.statements
            .iter()
            .map(|s| s.class)
            .max()
            .unwrap_or(Class::Read)
    }
}

/// Facts about one statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementFacts {
    /// Lower-case statement kind: `select`, `insert`, `drop_table`, `set_role`, `do`, `unknown` ...
    pub kind: String,
    pub class: Class,
    /// Relations read or written: lower-case unless quoted, schema-qualified as written;
    /// sorted, no duplicates. CTE names are not tables.
    pub tables: Vec<String>,
    /// Bare column names referenced; `*` for a wildcard or a whole-row reference (`to_json(c)`).
    pub columns: Vec<String>,
    /// Functions called, lower-case unless quoted, schema-qualified as written.
    pub functions: Vec<String>,
    /// The statement (UPDATE, DELETE, SELECT; every branch of a UNION) has a WHERE clause.
    pub has_where: bool,
    /// A WITH query is an INSERT, UPDATE, DELETE or MERGE.
    pub data_modifying_cte: bool,
    pub select_into: bool,
    /// FOR UPDATE / FOR SHARE (or another row lock) anywhere.
    pub for_update: bool,
    /// COPY only: `from` or `to`.
    pub copy_direction: Option<String>,
    pub copy_program: bool,
    pub parse_error: Option<String>,
}

impl StatementFacts {
    fn new(kind: impl Into<String>, class: Class) -> Self {
        StatementFacts {
            kind: kind.into(),
            class,
            tables: Vec::new(),
            columns: Vec::new(),
            functions: Vec::new(),
            has_where: false,
            data_modifying_cte: false,
            select_into: false,
            for_update: false,
            copy_direction: None,
            copy_program: false,
            parse_error: None,
        }
    }
}

/// Facts for a statement batch; call it on a fingerprint-cache miss.
pub fn facts(sql: &str, dialect: Dialect) -> Facts {
    let mut statements = Vec::new();
    for piece in split(sql, dialect) {
        let tokens = piece.toks.len();
        let parsed = match (parse(&piece.code, tokens, dialect), piece.copy_cut) {
            // sqlparser does not know every COPY option (`freeze on`); options after STDIN or
            // STDOUT cannot run anything, so parse without them rather than refuse pgbench -i.
            (Err(e), Some(cut)) => {
                parse(piece.code.get(..cut).unwrap_or_default(), tokens, dialect).map_err(|_| e)
            }
            (parsed, _) => parsed,
        };
        match parsed {
            Ok(parsed) if !parsed.is_empty() => {
                statements.extend(parsed.iter().map(|st| analyse(st, dialect)))
            }
            Ok(_) => statements.push(fallback(&piece.words(), "no statement found".into())),
            Err(e) => statements.push(fallback(&piece.words(), mask_literals(&e.to_string()))),
        }
    }
    let parse_error = statements.iter().find_map(|s| s.parse_error.clone());
    Facts {
        multi_statement: statements.len() > 1,
        statements,
        parse_error,
    }
}

/// `Parser::parse_sql`, with the token buffer sized up front: a piece of `tokens` tokens
/// becomes about twice as many sqlparser tokens (the whitespace between them counts), and
/// growing the buffer one doubling at a time is a visible part of a short statement's parse.
fn parse(code: &str, tokens: usize, dialect: Dialect) -> Result<Vec<Statement>, ParserError> {
    fn with(d: &dyn SqlDialect, code: &str, tokens: usize) -> Result<Vec<Statement>, ParserError> {
        let mut buf = Vec::with_capacity(tokens.saturating_mul(2).saturating_add(1));
        Tokenizer::new(d, code).tokenize_with_location_into_buf(&mut buf)?;
        Parser::new(d)
            .with_tokens_with_locations(buf)
            .parse_statements()
    }
    match dialect {
        Dialect::Postgres => with(&PostgreSqlDialect {}, code, tokens),
        Dialect::MySql => with(&MySqlDialect {}, code, tokens),
    }
}

/// One statement of a batch as sqlparser should see it.
struct Piece {
    /// The statement's tokens with comments replaced by a space and adjacent operators spaced
    /// (`--1` in MySQL is two minus signs; sqlparser must not read a comment there).
    code: String,
    /// Its tokens (comments gone), as kind and byte range in `code`.
    toks: Vec<PieceToken>,
    /// For `COPY name [(cols)] FROM STDIN | TO STDOUT <options>`: where the options start.
    copy_cut: Option<usize>,
}

/// A token of a piece: kind and byte range in `Piece::code`.
type PieceToken = (Tok, usize, usize);

impl Piece {
    fn new(code: String, toks: Vec<PieceToken>) -> Piece {
        let copy_cut = copy_options_start(&code, &toks);
        Piece {
            code,
            toks,
            copy_cut,
        }
    }

    /// Its first words, lower-case, for the keyword fallback (only a statement sqlparser
    /// rejects needs them).
    fn words(&self) -> Vec<String> {
        self.toks
            .iter()
            .filter(|&&(kind, ..)| kind == Tok::Word)
            .take(4)
            .map(|&(_, a, b)| self.code.get(a..b).unwrap_or_default().to_ascii_lowercase())
            .collect()
    }
}

/// Where the option list of a plain `COPY name [(cols)] FROM STDIN | TO STDOUT ...` starts, if
/// the statement is one and has options but no WHERE (the only clause that can call anything).
fn copy_options_start(code: &str, toks: &[PieceToken]) -> Option<usize> {
    let text = |i: usize| {
        toks.get(i)
            .and_then(|&(_, a, b)| code.get(a..b))
            .unwrap_or_default()
    };
    let kind = |i: usize| toks.get(i).map(|t| t.0);
    let word = |i: usize, w: &str| kind(i) == Some(Tok::Word) && text(i).eq_ignore_ascii_case(w);
    let punct = |i: usize, p: &str| kind(i) == Some(Tok::Punct) && text(i) == p;
    let name = |i: usize| matches!(kind(i), Some(Tok::Word | Tok::QuotedIdent));
    if !word(0, "copy") || !name(1) {
        return None;
    }
    let mut i = 2;
    while punct(i, ".") && name(i + 1) {
        i += 2;
    }
    if punct(i, "(") {
        i += 1;
        loop {
            if !name(i) {
                return None;
            }
            i += 1;
            if punct(i, ",") {
                i += 1;
            } else if punct(i, ")") {
                i += 1;
                break;
            } else {
                return None;
            }
        }
    }
    if !((word(i, "from") && word(i + 1, "stdin")) || (word(i, "to") && word(i + 1, "stdout"))) {
        return None;
    }
    i += 2;
    let start = toks.get(i)?.1;
    if (i..toks.len()).any(|j| word(j, "where")) {
        return None;
    }
    Some(start)
}

fn split(sql: &str, dialect: Dialect) -> Vec<Piece> {
    let mut pieces = Vec::new();
    // Sized for the usual one-statement batch, whose code is about as long as the text, so
    // that neither grows a doubling at a time.
    let mut code = String::with_capacity(sql.len());
    let mut toks: Vec<PieceToken> = Vec::with_capacity(sql.len() / 4 + 1);
    let mut prev: Option<(Tok, usize)> = None;
    let mut depth = 0usize;
    let mut tokens = Lexer::new(sql, dialect).peekable();
    while let Some(t) = tokens.next() {
        let raw = sql.get(t.start..t.end).unwrap_or_default();
        // sqlparser does not read `U&"..."`; hand it the plain quoted identifier it stands for,
        // so `U&"\0063ustomers"` is reported as the table `customers` it is.
        let decoded = match t.kind {
            Tok::QuotedIdent if raw.starts_with(['u', 'U']) => {
                let uescape = tokens.peek().is_some_and(|n| {
                    sql.get(n.start..n.end)
                        .is_some_and(|w| w.eq_ignore_ascii_case("uescape"))
                });
                if uescape {
                    None
                } else {
                    decode_unicode_ident(raw)
                }
            }
            _ => None,
        };
        let text = decoded.as_deref().unwrap_or(raw);
        if t.kind == Tok::Punct {
            match text {
                // `;` inside parentheses (CREATE RULE ... DO (a; b)) does not end the statement.
                ";" if depth == 0 => {
                    if !code.is_empty() {
                        pieces.push(Piece::new(
                            std::mem::take(&mut code),
                            std::mem::take(&mut toks),
                        ));
                    }
                    toks.clear();
                    prev = None;
                    continue;
                }
                "(" | "[" => depth += 1,
                ")" | "]" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if let Some((prev_kind, prev_end)) = prev {
            if prev_end != t.start || (prev_kind == Tok::Op && t.kind == Tok::Op) {
                code.push(' ');
            }
        }
        toks.push((t.kind, code.len(), code.len() + text.len()));
        code.push_str(text);
        prev = Some((t.kind, t.end));
    }
    if !code.is_empty() {
        pieces.push(Piece::new(code, toks));
    }
    pieces
}

/// `U&"d\0061t\+000061"` → `"data"`; None when it is not a well-formed one.
fn decode_unicode_ident(raw: &str) -> Option<String> {
    let body = raw.get(3..raw.len().checked_sub(1)?)?;
    if !raw.ends_with('"') || raw.len() < 4 {
        return None;
    }
    let body = body.replace("\"\"", "\"");
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let rest = chars.as_str();
        let (digits, skip) = match rest.chars().next()? {
            '\\' => {
                out.push('\\');
                chars.next();
                continue;
            }
            '+' => (rest.get(1..7)?, 7),
            _ => (rest.get(..4)?, 4),
        };
        let code = u32::from_str_radix(digits, 16).ok()?;
        out.push(char::from_u32(code).filter(|&c| c != '\0')?);
        chars = rest.get(skip..)?.chars();
    }
    Some(format!("\"{}\"", out.replace('"', "\"\"")))
}

/// Parse errors quote the input; literal values must not reach the policy input.
fn mask_literals(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut last = 0;
    for t in Lexer::new(msg, Dialect::Postgres) {
        out.push_str(msg.get(last..t.start).unwrap_or_default());
        match t.kind {
            Tok::Str | Tok::Num => out.push('?'),
            _ => out.push_str(msg.get(t.start..t.end).unwrap_or_default()),
        }
        last = t.end;
    }
    out.push_str(msg.get(last..).unwrap_or_default());
    out
}

/// A statement sqlparser could not parse: named by its first words, always privileged.
fn fallback(words: &[String], error: String) -> StatementFacts {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    const OBJECTS: &[&str] = &[
        "table",
        "index",
        "view",
        "function",
        "procedure",
        "role",
        "user",
        "schema",
        "database",
        "sequence",
        "extension",
        "trigger",
        "type",
        "domain",
        "policy",
        "rule",
        "server",
        "publication",
        "subscription",
        "aggregate",
        "operator",
        "collation",
        "language",
        "cast",
        "statistics",
        "tablespace",
        "group",
        "conversion",
        "event",
    ];
    let object = |verb: &str, i: usize| -> Cow<'static, str> {
        let mut i = i;
        while matches!(
            w(i),
            "or" | "replace"
                | "unique"
                | "temp"
                | "temporary"
                | "unlogged"
                | "global"
                | "local"
                | "trusted"
                | "procedural"
                | "recursive"
                | "if"
                | "not"
                | "exists"
                | "constraint"
        ) {
            i += 1;
        }
        match w(i) {
            "materialized" => format!("{verb}_materialized_view").into(),
            "foreign" if w(i + 1) == "table" => format!("{verb}_foreign_table").into(),
            "foreign" => format!("{verb}_foreign_data_wrapper").into(),
            "default" if w(i + 1) == "privileges" => format!("{verb}_default_privileges").into(),
            "large" => format!("{verb}_large_object").into(),
            o if OBJECTS.contains(&o) => format!("{verb}_{o}").into(),
            _ => "unknown".into(),
        }
    };
    let kind: Cow<'static, str> = match w(0) {
        "do" => "do".into(),
        "call" => "call".into(),
        "load" if w(1) == "data" || w(1) == "xml" => "load_data".into(),
        "load" => "load".into(),
        "execute" | "exec" => "execute".into(),
        "alter" if w(1) == "system" => "alter_system".into(),
        "alter" => object("alter", 1),
        "create" => object("create", 1),
        "drop" => object("drop", 1),
        "set" | "reset" => match (w(1), w(2), w(3)) {
            ("role", ..) | ("session" | "local", "role", _) => "set_role".into(),
            ("session", "authorization", _) | ("session", "session", "authorization") => {
                "set_session_authorization".into()
            }
            _ => w(0).to_string().into(),
        },
        "select" | "with" | "values" | "table" => "select".into(),
        "start" | "begin" => "begin".into(),
        "end" | "commit" => "commit".into(),
        "abort" | "rollback" => "rollback".into(),
        k @ ("insert" | "update" | "delete" | "merge" | "copy" | "truncate" | "grant"
        | "revoke" | "vacuum" | "analyze" | "explain" | "show" | "listen" | "unlisten"
        | "notify" | "savepoint" | "release" | "prepare" | "deallocate" | "discard"
        | "lock" | "cluster" | "reindex" | "checkpoint" | "refresh" | "comment"
        | "security" | "import" | "reassign" | "declare" | "fetch" | "move" | "close"
        | "handler" | "replace" | "rename" | "kill" | "flush" | "install" | "shutdown") => {
            k.to_string().into()
        }
        _ => "unknown".into(),
    };
    let mut f = StatementFacts::new(kind, Class::Privileged);
    f.parse_error = Some(error);
    f
}

/// Unquoted identifiers fold to lower case (PostgreSQL folds ASCII only); quoted ones do not.
fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_ascii_lowercase(),
    }
}

fn object_name(n: &ObjectName) -> String {
    let mut out = String::new();
    for (k, part) in n.0.iter().enumerate() {
        if k > 0 {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(i) => out.push_str(&ident(i)),
            ObjectNamePart::Function(f) => out.push_str(&ident(&f.name)),
        }
    }
    out
}

fn last_ident(n: &ObjectName) -> Option<String> {
    match n.0.last()? {
        ObjectNamePart::Identifier(i) => Some(ident(i)),
        ObjectNamePart::Function(f) => Some(ident(&f.name)),
    }
}

/// The WITH list of one query, for CTE name scoping.
struct CteFrame {
    names: Vec<String>,
    /// Identity of each CTE's body, to notice when the walk enters it.
    bodies: Vec<*const Query>,
    recursive: bool,
    /// How many of `names` are visible now: inside the body of CTE i of a non-recursive WITH
    /// only the ones before it; in the main query all of them.
    visible: usize,
}

#[derive(Default)]
struct Collector {
    tables: BTreeSet<String>,
    columns: BTreeSet<String>,
    functions: BTreeSet<String>,
    /// Table names and aliases: a column reference with one of these names is a whole row.
    row_names: BTreeSet<String>,
    ctes: Vec<CteFrame>,
    /// The name of a table function in FROM (`from lo_import(...)`), which the walk reports as
    /// a relation next.
    table_function: Option<*const ObjectName>,
    data_modifying_cte: bool,
    select_into: bool,
    for_update: bool,
    /// An INSERT, UPDATE, DELETE or MERGE anywhere in the tree.
    dml: bool,
    privileged_function: bool,
    write_function: bool,
    /// Inside SET: identifiers there are values, not columns.
    in_set: usize,
    /// `SELECT ... INTO t`: `t` is walked as an expression but is a table.
    into_targets: BTreeSet<String>,
    mysql: bool,
    /// MySQL: sqlparser took a quoted string for a table, column or function name. Under
    /// ANSI_QUOTES the server would too, and the fingerprint has replaced that name by `?`: the
    /// facts then hold for one spelling only, so the statement cannot be judged.
    string_named: bool,
}

fn is_dml(body: &SetExpr) -> bool {
    matches!(
        body,
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
    )
}

impl Collector {
    fn note(&mut self, i: &Ident) {
        self.string_named |= self.mysql && matches!(i.quote_style, Some('"' | '\''));
    }

    fn note_name(&mut self, n: &ObjectName) {
        for part in &n.0 {
            match part {
                ObjectNamePart::Identifier(i) => self.note(i),
                ObjectNamePart::Function(f) => self.note(&f.name),
            }
        }
    }

    fn function(&mut self, name: &ObjectName) {
        self.note_name(name);
        let n = object_name(name);
        self.privileged_function |= privileged::is_privileged_function(&n);
        self.write_function |= privileged::is_write_function(&n);
        self.functions.insert(n);
    }

    fn table(&mut self, name: &ObjectName) {
        self.note_name(name);
        if let Some(last) = last_ident(name) {
            self.row_names.insert(last);
        }
        self.tables.insert(object_name(name));
    }

    fn alias(&mut self, alias: &Option<TableAlias>) {
        if let Some(a) = alias {
            self.row_names.insert(ident(&a.name));
        }
    }

    fn column(&mut self, name: &ObjectName) {
        self.note_name(name);
        if let Some(c) = last_ident(name) {
            self.columns.insert(c);
        }
    }

    fn returning(&mut self, items: &Option<Vec<SelectItem>>) {
        self.select_items(items.as_deref().unwrap_or_default());
    }

    fn select_items(&mut self, items: &[SelectItem]) {
        for item in items {
            if matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            ) {
                self.columns.insert("*".into());
            }
        }
    }

    /// `TABLE name` (alone or in a UNION): sqlparser keeps the name as plain identifiers, not
    /// as a relation, so the walk would not report it.
    fn table_statements(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Table(t) => {
                let Some(table) = &t.table_name else { return };
                let name = match &t.schema_name {
                    Some(schema) => format!("{}.{}", ident(schema), ident(table)),
                    None if self.is_cte(&ident(table)) => return,
                    None => ident(table),
                };
                self.note(table);
                self.row_names.insert(ident(table));
                self.tables.insert(name);
                self.columns.insert("*".into());
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.table_statements(left);
                self.table_statements(right);
            }
            _ => {}
        }
    }

    fn is_cte(&self, name: &str) -> bool {
        self.ctes
            .iter()
            .any(|f| f.names.iter().take(f.visible).any(|n| n == name))
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(frame) = self.ctes.last_mut() {
            if let Some(i) = frame.bodies.iter().position(|b| std::ptr::eq(*b, q)) {
                frame.visible = if frame.recursive {
                    frame.names.len()
                } else {
                    i
                };
            }
        }
        if let Some(with) = &q.with {
            let ctes = &with.cte_tables;
            self.data_modifying_cte |= ctes.iter().any(|c| is_dml(&c.query.body));
            self.ctes.push(CteFrame {
                names: ctes.iter().map(|c| ident(&c.alias.name)).collect(),
                bodies: ctes.iter().map(|c| &*c.query as *const Query).collect(),
                recursive: with.recursive,
                visible: 0,
            });
        }
        self.for_update |= !q.locks.is_empty();
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // After the WITH list, so the query's own CTEs are in scope.
        self.table_statements(&q.body);
        if q.with.is_some() {
            self.ctes.pop();
        }
        if let Some(frame) = self.ctes.last_mut() {
            if frame.bodies.iter().any(|b| std::ptr::eq(*b, q)) {
                frame.visible = frame.names.len();
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        self.select_items(&s.projection);
        if let Some(into) = &s.into {
            self.select_into = true;
            for target in &into.targets {
                match target {
                    Expr::Identifier(i) if !i.value.starts_with('@') => {
                        self.tables.insert(ident(i));
                        self.into_targets.insert(ident(i));
                    }
                    Expr::CompoundIdentifier(parts) => {
                        let n: Vec<String> = parts.iter().map(ident).collect();
                        self.tables.insert(n.join("."));
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        if self.table_function.is_some_and(|p| std::ptr::eq(p, name)) {
            self.table_function = None;
            self.function(name);
            return ControlFlow::Continue(());
        }
        if name.0.len() == 1 && last_ident(name).is_some_and(|n| self.is_cte(&n)) {
            return ControlFlow::Continue(());
        }
        self.table(name);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    self.table_function = Some(name as *const ObjectName);
                }
                self.alias(alias);
            }
            TableFactor::Function { name, alias, .. } => {
                self.function(name);
                self.alias(alias);
            }
            TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::JsonTable { alias, .. }
            | TableFactor::XmlTable { alias, .. } => self.alias(alias),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Identifier(i) if self.in_set == 0 => {
                self.note(i);
                self.columns.insert(ident(i));
            }
            Expr::CompoundIdentifier(parts) if self.in_set == 0 => {
                parts.iter().for_each(|p| self.note(p));
                if let Some(last) = parts.last() {
                    self.columns.insert(ident(last));
                }
            }
            Expr::Function(f) => {
                self.function(&f.name);
                if let FunctionArguments::List(list) = &f.args {
                    let row = list.args.iter().any(|a| {
                        matches!(
                            a,
                            FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(_))
                                | FunctionArg::Named {
                                    arg: FunctionArgExpr::QualifiedWildcard(_),
                                    ..
                                }
                        )
                    });
                    if row {
                        self.columns.insert("*".into());
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        match st {
            Statement::Insert(ins) => {
                self.dml = true;
                for c in &ins.columns {
                    self.column(c);
                }
                self.returning(&ins.returning);
            }
            Statement::Update(u) => {
                self.dml = true;
                for a in &u.assignments {
                    match &a.target {
                        AssignmentTarget::ColumnName(c) => self.column(c),
                        AssignmentTarget::Tuple(cs) => cs.iter().for_each(|c| self.column(c)),
                    }
                }
                self.returning(&u.returning);
            }
            Statement::Delete(d) => {
                self.dml = true;
                self.returning(&d.returning);
            }
            Statement::Merge(_) => self.dml = true,
            Statement::Set(_) => self.in_set += 1,
            Statement::Call(f) => self.function(&f.name),
            Statement::Copy {
                source:
                    CopySource::Table {
                        table_name,
                        columns,
                    },
                to,
                ..
            } => {
                self.table(table_name);
                for c in columns {
                    self.note(c);
                    self.columns.insert(ident(c));
                }
                if columns.is_empty() && *to {
                    self.columns.insert("*".into());
                }
            }
            Statement::Drop {
                object_type: ObjectType::Table | ObjectType::View | ObjectType::MaterializedView,
                names,
                ..
            } => names.iter().for_each(|n| self.table(n)),
            Statement::Grant(g) => {
                if let Some(GrantObjects::Tables(names)) = &g.objects {
                    names.iter().for_each(|n| self.table(n));
                }
            }
            Statement::Revoke(r) => {
                if let Some(GrantObjects::Tables(names)) = &r.objects {
                    names.iter().for_each(|n| self.table(n));
                }
            }
            Statement::Vacuum(v) => {
                if let Some(t) = &v.table_name {
                    self.table(t);
                }
            }
            Statement::CreateTable(ct) => {
                for c in &ct.columns {
                    self.columns.insert(ident(&c.name));
                }
            }
            Statement::AlterTable(at) => {
                for op in &at.operations {
                    if let AlterTableOperation::AddColumn { column_def, .. } = op {
                        self.columns.insert(ident(&column_def.name));
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        if matches!(st, Statement::Set(_)) {
            self.in_set = self.in_set.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }
}

fn analyse(stmt: &Statement, dialect: Dialect) -> StatementFacts {
    let mut c = Collector {
        mysql: dialect == Dialect::MySql,
        ..Collector::default()
    };
    // The walk never breaks: every hook returns Continue.
    let _ = stmt.visit(&mut c);
    let (kind, base) = kind_and_class(stmt);
    let mut class = base;
    // EXPLAIN without ANALYZE plans but does not run.
    let runs = !matches!(stmt, Statement::Explain { .. }) || explain_runs(stmt);
    if runs
        && class < Class::Write
        && (c.dml || c.select_into || c.for_update || c.data_modifying_cte || c.write_function)
    {
        class = Class::Write;
    }
    if c.privileged_function || c.string_named {
        class = Class::Privileged;
    }
    for t in &c.into_targets {
        c.columns.remove(t);
    }
    // A column named like a table or alias in scope is a whole-row reference.
    if c.columns.iter().any(|col| c.row_names.contains(col)) {
        c.columns.insert("*".into());
    }
    let mut f = StatementFacts::new(kind, class);
    f.tables = c.tables.into_iter().collect();
    f.columns = c.columns.into_iter().collect();
    f.functions = c.functions.into_iter().collect();
    f.has_where = has_where(stmt);
    f.data_modifying_cte = c.data_modifying_cte;
    f.select_into = c.select_into;
    f.for_update = c.for_update;
    if let Statement::Copy { to, target, .. } = stmt {
        f.copy_direction = Some(if *to { "to" } else { "from" }.into());
        f.copy_program = matches!(target, CopyTarget::Program { .. });
    }
    f
}

/// EXPLAIN ANALYZE runs the statement; so does `EXPLAIN (ANALYZE [value]) ...`, whatever the
/// value says (`analyze off` costs a review, a misread `analyze on` would cost a write).
fn explain_runs(stmt: &Statement) -> bool {
    match stmt {
        Statement::Explain {
            analyze, options, ..
        } => {
            *analyze
                || options
                    .iter()
                    .flatten()
                    .any(|o| o.name.value.eq_ignore_ascii_case("analyze"))
        }
        _ => false,
    }
}

fn has_where(stmt: &Statement) -> bool {
    fn body(b: &SetExpr) -> bool {
        match b {
            SetExpr::Select(s) => s.selection.is_some(),
            SetExpr::Query(q) => body(&q.body),
            // Every branch must be filtered for the union to count as filtered.
            SetExpr::SetOperation { left, right, .. } => body(left) && body(right),
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                has_where(s)
            }
            SetExpr::Values(_) | SetExpr::Table(_) => false,
        }
    }
    match stmt {
        Statement::Update(u) => u.selection.is_some(),
        Statement::Delete(d) => d.selection.is_some(),
        Statement::Query(q) => body(&q.body),
        Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
            has_where(statement)
        }
        _ => false,
    }
}

/// Statement kind and the class the kind alone implies.
fn kind_and_class(stmt: &Statement) -> (Cow<'static, str>, Class) {
    use Class::*;
    let k = |s: &'static str, c: Class| (Cow::Borrowed(s), c);
    match stmt {
        Statement::Query(q) => match &*q.body {
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                kind_and_class(s)
            }
            _ => k("select", Read),
        },
        Statement::Insert(_) => k("insert", Write),
        Statement::Update(_) => k("update", Write),
        Statement::Delete(_) => k("delete", Write),
        Statement::Merge(_) => k("merge", Write),
        Statement::Copy { to, target, .. } => match target {
            // Server-side files and programs, in either direction.
            CopyTarget::File { .. } | CopyTarget::Program { .. } => k("copy", Privileged),
            _ if *to => k("copy", Read),
            _ => k("copy", Write),
        },

        Statement::CreateTable(_) => k("create_table", Ddl),
        Statement::CreateView(_) => k("create_view", Ddl),
        Statement::CreateIndex(_) => k("create_index", Ddl),
        Statement::CreateFunction(f) => {
            // C and untrusted procedural languages run arbitrary code in the server.
            let lang = f.language.as_ref().map(|l| l.value.to_ascii_lowercase());
            let untrusted = lang.as_deref().is_some_and(|l| {
                l == "c" || l == "internal" || (l.starts_with("pl") && l.ends_with('u'))
            });
            k("create_function", if untrusted { Privileged } else { Ddl })
        }
        Statement::CreateProcedure { .. } => k("create_procedure", Ddl),
        Statement::CreateTrigger(_) => k("create_trigger", Ddl),
        Statement::CreateSchema { .. } => k("create_schema", Ddl),
        Statement::CreateDatabase { .. } => k("create_database", Ddl),
        Statement::CreateSequence { .. } => k("create_sequence", Ddl),
        Statement::CreateType { .. } => k("create_type", Ddl),
        Statement::CreateDomain(_) => k("create_domain", Ddl),
        Statement::CreatePolicy(_) => k("create_policy", Ddl),
        Statement::CreateRule(_) => k("create_rule", Ddl),
        // Extensions load server code; foreign servers and tables reach other servers and files.
        Statement::CreateExtension(_) => k("create_extension", Privileged),
        Statement::CreateServer(_) => k("create_server", Privileged),
        Statement::CreateForeignDataWrapper(_) => k("create_foreign_data_wrapper", Privileged),
        Statement::CreateUserMapping(_) => k("create_user_mapping", Privileged),
        Statement::CreateForeignTable(_) => k("create_foreign_table", Privileged),
        Statement::CreateRole(_) => k("create_role", Dcl),
        Statement::CreateUser(_) => k("create_user", Dcl),
        Statement::AlterTable(_) => k("alter_table", Ddl),
        Statement::AlterIndex { .. } => k("alter_index", Ddl),
        Statement::AlterView(_) => k("alter_view", Ddl),
        Statement::AlterSchema(_) => k("alter_schema", Ddl),
        Statement::AlterFunction(_) => k("alter_function", Ddl),
        Statement::AlterType(_) => k("alter_type", Ddl),
        Statement::AlterPolicy(_) => k("alter_policy", Ddl),
        Statement::AlterTrigger(_) => k("alter_trigger", Ddl),
        Statement::AlterRole { .. } => k("alter_role", Dcl),
        Statement::AlterUser(_) => k("alter_user", Dcl),
        Statement::Drop { object_type, .. } => {
            let name = object_type
                .to_string()
                .to_ascii_lowercase()
                .replace(' ', "_");
            let class = match object_type {
                ObjectType::Role | ObjectType::User | ObjectType::Group => Dcl,
                _ => Ddl,
            };
            (format!("drop_{name}").into(), class)
        }
        Statement::DropFunction(_) => k("drop_function", Ddl),
        Statement::DropProcedure { .. } => k("drop_procedure", Ddl),
        Statement::DropTrigger(_) => k("drop_trigger", Ddl),
        Statement::DropExtension(_) => k("drop_extension", Ddl),
        Statement::DropPolicy(_) => k("drop_policy", Ddl),
        Statement::DropDomain(_) => k("drop_domain", Ddl),
        Statement::DropRule(_) => k("drop_rule", Ddl),
        Statement::Truncate(_) => k("truncate", Ddl),
        Statement::Comment { .. } => k("comment", Ddl),
        Statement::RenameTable(_) => k("rename_table", Ddl),
        Statement::OptimizeTable { .. } => k("optimize_table", Ddl),
        Statement::RefreshMaterializedView(_) => k("refresh_materialized_view", Ddl),
        Statement::Analyze(_) => k("analyze", Ddl),
        Statement::Vacuum(_) => k("vacuum", Ddl),

        Statement::Grant(_) => k("grant", Dcl),
        Statement::Revoke(_) => k("revoke", Dcl),
        Statement::GrantRole(_) => k("grant", Dcl),
        Statement::RevokeRole(_) => k("revoke", Dcl),
        Statement::Deny(_) => k("deny", Dcl),
        Statement::AlterDefaultPrivileges(_) => k("alter_default_privileges", Dcl),

        Statement::Set(set) => set_kind(set),
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCollation { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowProcessList { .. }
        | Statement::ShowCatalogs { .. } => k("show", Session),
        // Back to the gateway's own upstream role: as privileged as setting one.
        Statement::Reset(r) => match &r.reset {
            Reset::SessionAuthorization => k("reset", Privileged),
            Reset::ConfigurationParameter(name)
                if privileged::is_privileged_setting(&object_name(name)) =>
            {
                k("reset", Privileged)
            }
            _ => k("reset", Session),
        },
        Statement::Discard { .. } => k("discard", Session),
        Statement::LISTEN { .. } => k("listen", Session),
        Statement::UNLISTEN { .. } => k("unlisten", Session),
        Statement::NOTIFY { .. } => k("notify", Session),
        Statement::Use(_) => k("use", Session),
        Statement::Deallocate { .. } => k("deallocate", Session),
        Statement::Close { .. } => k("close", Session),
        Statement::UnlockTables => k("unlock_tables", Session),
        Statement::Declare { .. } => k("declare", Read),
        Statement::Fetch { .. } => k("fetch", Read),
        Statement::ExplainTable { .. } => k("describe", Read),
        Statement::Lock(_) => k("lock", Write),
        Statement::LockTables { .. } => k("lock_tables", Write),

        Statement::StartTransaction { .. } => k("begin", Transaction),
        Statement::Commit { .. } => k("commit", Transaction),
        Statement::Rollback { .. } => k("rollback", Transaction),
        Statement::Savepoint { .. } => k("savepoint", Transaction),
        Statement::ReleaseSavepoint { .. } => k("release_savepoint", Transaction),

        // PREPARE runs nothing yet, but says what EXECUTE will run.
        Statement::Prepare { statement, .. } => {
            k("prepare", kind_and_class(statement).1.max(Session))
        }
        Statement::Explain { statement, .. } => k(
            "explain",
            if explain_runs(stmt) {
                kind_and_class(statement).1
            } else {
                Read
            },
        ),

        // Runs text the gateway cannot see, or acts on the server itself.
        Statement::Execute { .. } => k("execute", Privileged),
        Statement::Call(_) => k("call", Privileged),
        Statement::Load { .. } => k("load", Privileged),
        Statement::LoadData { .. } => k("load_data", Privileged),
        Statement::Kill { .. } => k("kill", Privileged),
        Statement::Flush { .. } => k("flush", Privileged),
        other => (variant_kind(other).into(), Privileged),
    }
}

/// `snake_case` of the variant name, for statements this module does not know: still a kind the
/// policy can name, and privileged until someone classifies it.
fn variant_kind(stmt: &Statement) -> String {
    let debug = format!("{stmt:?}");
    let name = debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

fn set_kind(set: &Set) -> (Cow<'static, str>, Class) {
    use Class::*;
    match set {
        Set::SetRole { .. } => ("set_role".into(), Privileged),
        Set::SetSessionAuthorization(_) => ("set_session_authorization".into(), Privileged),
        Set::SetTransaction { .. } => ("set_transaction".into(), Transaction),
        Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => setting(scope.as_ref(), &object_name(variable), values.iter()),
        Set::ParenthesizedAssignments { variables, values } => variables
            .iter()
            .map(|v| setting(None, &object_name(v), values.iter()))
            .max_by_key(|(_, c)| *c)
            .unwrap_or(("set".into(), Session)),
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|a| {
                setting(
                    a.scope.as_ref(),
                    &object_name(&a.name),
                    std::iter::once(&a.value),
                )
            })
            .max_by_key(|(_, c)| *c)
            .unwrap_or(("set".into(), Session)),
        Set::SetNames { charset_name, .. } => {
            let safe = charset_name.quote_style.is_none()
                && !privileged::is_unsafe_encoding(&charset_name.value);
            ("set".into(), if safe { Session } else { Privileged })
        }
        Set::SetNamesDefault {} | Set::SetTimeZone { .. } | Set::SetSessionParam(_) => {
            ("set".into(), Session)
        }
    }
}

fn setting<'e>(
    scope: Option<&ContextModifier>,
    name: &str,
    mut values: impl Iterator<Item = &'e Expr>,
) -> (Cow<'static, str>, Class) {
    use Class::*;
    let base = name
        .rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_start_matches('@')
        .to_ascii_lowercase();
    match base.as_str() {
        "role" => return ("set_role".into(), Privileged),
        "session_authorization" => return ("set_session_authorization".into(), Privileged),
        _ => {}
    }
    // SET GLOBAL / @@global.x changes the server for every session: like ALTER SYSTEM.
    let global = matches!(scope, Some(ContextModifier::Global))
        || name
            .split('.')
            .any(|p| p.trim_start_matches('@').eq_ignore_ascii_case("global"));
    if global || privileged::is_privileged_setting(&base) {
        return ("set".into(), Privileged);
    }
    if privileged::is_encoding_setting(&base) {
        // A quoted value is invisible in the fingerprint, so only a bare safe name passes.
        let safe = values.all(|v| match v {
            Expr::Identifier(i) => {
                i.quote_style.is_none() && !privileged::is_unsafe_encoding(&i.value)
            }
            _ => false,
        });
        return ("set".into(), if safe { Session } else { Privileged });
    }
    ("set".into(), Session)
}

#[cfg(test)]
#[path = "facts_tests.rs"]
mod tests;
