//! Analyse stage: the one lexer behind both the fingerprint and the text handed to sqlparser.
//!
//! It follows the *server's* lexical rules, not sqlparser's, because the gateway must see
//! statement boundaries, comments and literals exactly where PostgreSQL or MySQL will see them.
//! Where the lexer is unsure it keeps text verbatim rather than calling it a literal: a
//! fingerprint that distinguishes too much only costs a cache miss, one that merges two different
//! statements lets the decision for one serve the other.
//!
//! PostgreSQL rules: <https://www.postgresql.org/docs/current/sql-syntax-lexical.html> and
//! `src/backend/parser/scan.l` (operator trimming, `!=` → `<>`, numeric forms, dollar quotes,
//! nested comments). Assumes `standard_conforming_strings = on` (the default since 9.1; turning it
//! off is classed privileged by `facts`).
//!
//! MySQL rules: <https://dev.mysql.com/doc/refman/8.4/en/lexical-structure.html>: backticks,
//! `#` and `-- ` comments (`--` needs a following space or control character, else it is two
//! minus signs), non-nested block comments, `/*! ... */` and `/*M! ... */` executable comments
//! whose content is code, backslash escapes in `'` and `"` strings (default `sql_mode`), and
//! identifiers that may begin with digits.

use super::Dialect;

/// What a token is; spans index into the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Keyword or unquoted identifier (MySQL `@var`/`@@var` included).
    Word,
    /// `"..."`, `` `...` `` or `U&"..."`: case is kept.
    QuotedIdent,
    /// Any string literal: standard, `E''`, `U&''`, `B''`, `X''`, `N''`, dollar-quoted, MySQL `"..."`.
    Str,
    /// Numeric literal.
    Num,
    /// PostgreSQL positional parameter `$1`.
    Param,
    /// MySQL `?` bind placeholder.
    Placeholder,
    /// Operator (PostgreSQL: a trimmed run of operator characters; MySQL: a fixed set).
    Op,
    /// `(` `)` `[` `]` `,` `;` `.` `:` and `::`.
    Punct,
    /// Any other single character (or UTF-8 sequence).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Tok,
    pub start: usize,
    pub end: usize,
}

pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    dialect: Dialect,
    /// Inside a MySQL `/*! ... */` executable comment: its closing `*/` is skipped.
    in_hint: bool,
}

/// Byte classes, one table lookup per byte on the hot path.
const SPACE: u8 = 1;
const IDENT_START: u8 = 2;
const IDENT_CONT: u8 = 4;
const PG_OP: u8 = 8;
/// Can start a comment (or end a MySQL executable comment).
const COMMENT: u8 = 16;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            c |= SPACE;
        }
        // PostgreSQL `ident_start` and `ident_cont`: bytes of multi-byte characters are letters.
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            c |= IDENT_START | IDENT_CONT;
        }
        if b.is_ascii_digit() || b == b'$' {
            c |= IDENT_CONT;
        }
        // PostgreSQL `op_chars`.
        if matches!(
            b,
            b'~' | b'!'
                | b'@'
                | b'#'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'<'
                | b'>'
                | b'='
        ) {
            c |= PG_OP;
        }
        if matches!(b, b'/' | b'-' | b'#' | b'*') {
            c |= COMMENT;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline]
fn class(b: u8) -> u8 {
    CLASSES[b as usize]
}

#[inline]
fn is_space(b: u8) -> bool {
    class(b) & SPACE != 0
}

/// PostgreSQL `ident_start` (MySQL adds `$`).
#[inline]
fn is_ident_start(b: u8, d: Dialect) -> bool {
    class(b) & IDENT_START != 0 || (d == Dialect::MySql && b == b'$')
}

#[inline]
fn is_ident_cont(b: u8) -> bool {
    class(b) & IDENT_CONT != 0
}

#[inline]
fn is_pg_op(b: u8) -> bool {
    class(b) & PG_OP != 0
}

/// MySQL operators, longest first.
const MYSQL_OPS: [&[u8]; 12] = [
    b"<=>", b"->>", b"<=", b">=", b"<>", b"!=", b"<<", b">>", b"&&", b"||", b"->", b":=",
];

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a str, dialect: Dialect) -> Self {
        Lexer {
            src: sql.as_bytes(),
            pos: 0,
            dialect,
            in_hint: false,
        }
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.src.get(i).copied()
    }

    fn len(&self) -> usize {
        self.src.len()
    }

    /// End of a quoted run that began just before `from`; unterminated runs end at the input's end.
    fn quoted_end(&self, from: usize, quote: u8, backslash: bool) -> usize {
        let mut i = from;
        while let Some(c) = self.at(i) {
            if backslash && c == b'\\' {
                i += 2;
                continue;
            }
            if c == quote {
                if self.at(i + 1) == Some(quote) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        self.len()
    }

    /// End of a PostgreSQL block comment (nested) or MySQL block comment (not nested).
    fn block_comment_end(&self, from: usize) -> usize {
        let nested = self.dialect == Dialect::Postgres;
        let mut depth = 1usize;
        let mut i = from;
        while let Some(c) = self.at(i) {
            if c == b'*' && self.at(i + 1) == Some(b'/') {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
                continue;
            }
            if nested && c == b'/' && self.at(i + 1) == Some(b'*') {
                depth += 1;
                i += 2;
                continue;
            }
            i += 1;
        }
        self.len()
    }

    fn line_end(&self, from: usize) -> usize {
        let mut i = from;
        while let Some(c) = self.at(i) {
            if c == b'\n' || c == b'\r' {
                return i;
            }
            i += 1;
        }
        self.len()
    }

    /// Skips whitespace and comments; false at the end of input.
    #[inline]
    fn skip_trivia(&mut self) -> bool {
        loop {
            let Some(c) = self.at(self.pos) else {
                return false;
            };
            let cls = class(c);
            if cls & (SPACE | COMMENT) == 0 {
                return true;
            }
            if cls & SPACE != 0 {
                self.pos += 1;
                continue;
            }
            // `*`, `-` and `/` are mostly operators: only a real comment start leaves the loop.
            let c1 = self.at(self.pos + 1);
            let comment = match c {
                b'/' => c1 == Some(b'*'),
                b'-' => c1 == Some(b'-'),
                b'#' => self.dialect == Dialect::MySql,
                _ => self.in_hint && c1 == Some(b'/'),
            };
            return !comment || self.skip_comments();
        }
    }

    /// The rest of `skip_trivia`, once a byte that may start a comment is seen.
    #[cold]
    fn skip_comments(&mut self) -> bool {
        loop {
            let Some(c) = self.at(self.pos) else {
                return false;
            };
            if is_space(c) {
                self.pos += 1;
                continue;
            }
            let c1 = self.at(self.pos + 1);
            if c == b'/' && c1 == Some(b'*') {
                if self.dialect == Dialect::MySql {
                    // `/*!50700 code */` and MariaDB `/*M!100100 code */`: the markers go, the
                    // code stays. MySQL runs it on any server newer than the version.
                    let bang = match (self.at(self.pos + 2), self.at(self.pos + 3)) {
                        (Some(b'!'), _) => Some(self.pos + 3),
                        (Some(b'M'), Some(b'!')) => Some(self.pos + 4),
                        _ => None,
                    };
                    if let Some(mut i) = bang {
                        if !self.in_hint {
                            let digits_end = i + 6;
                            while i < digits_end && self.at(i).is_some_and(|b| b.is_ascii_digit()) {
                                i += 1;
                            }
                            self.in_hint = true;
                            self.pos = i;
                            continue;
                        }
                    }
                }
                self.pos = self.block_comment_end(self.pos + 2);
                continue;
            }
            if self.in_hint && c == b'*' && c1 == Some(b'/') {
                self.in_hint = false;
                self.pos += 2;
                continue;
            }
            if c == b'-' && c1 == Some(b'-') {
                let comment = match self.dialect {
                    Dialect::Postgres => true,
                    // MySQL: `--` starts a comment only before whitespace, a control character
                    // or the end of input; `1--1` is one minus minus one.
                    Dialect::MySql => self.at(self.pos + 2).is_none_or(|b| b <= b' '),
                };
                if comment {
                    self.pos = self.line_end(self.pos + 2);
                    continue;
                }
            }
            if c == b'#' && self.dialect == Dialect::MySql {
                self.pos = self.line_end(self.pos + 1);
                continue;
            }
            return true;
        }
    }

    /// PostgreSQL numeric forms (`42`, `1_000`, `0x1F`, `0o17`, `0b101`, `1.5`, `.5`, `1.`,
    /// `1e10`, `1.5E-3`) and MySQL's (no underscores, no `0o`). A number running straight into
    /// an identifier character is not a number (MySQL: an identifier such as `1abc`;
    /// PostgreSQL 16: an error, older: a number then an alias): the run is kept as a word.
    /// A run of digits in `radix` from `i`; PostgreSQL allows single underscores between them.
    #[inline]
    fn digits(&self, mut i: usize, radix: u32) -> usize {
        let ok = |b: Option<u8>| b.is_some_and(|b| char::from(b).is_digit(radix));
        if !ok(self.at(i)) {
            return i;
        }
        i += 1;
        loop {
            if ok(self.at(i)) {
                i += 1;
            } else if self.dialect == Dialect::Postgres
                && self.at(i) == Some(b'_')
                && ok(self.at(i + 1))
            {
                i += 2;
            } else {
                return i;
            }
        }
    }

    fn number(&self, start: usize) -> Token {
        let pg = self.dialect == Dialect::Postgres;
        let mut i = start;
        let radix = match (self.at(i), self.at(i + 1)) {
            (Some(b'0'), Some(b'x' | b'X')) => 16,
            (Some(b'0'), Some(b'b' | b'B')) => 2,
            (Some(b'0'), Some(b'o' | b'O')) if pg => 8,
            _ => 10,
        };
        let mut based = false;
        if radix != 10 {
            let first = if pg && self.at(i + 2) == Some(b'_') {
                i + 3
            } else {
                i + 2
            };
            let end = self.digits(first, radix);
            if end > first {
                i = end;
                based = true;
            }
        }
        if !based {
            i = self.digits(i, 10);
            // `1..10` is an integer followed by `..` (PL/pgSQL ranges).
            if self.at(i) == Some(b'.') && self.at(i + 1) != Some(b'.') {
                i = self.digits(i + 1, 10);
            }
            if matches!(self.at(i), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(self.at(i + 1), Some(b'+' | b'-')));
                if self.at(i + 1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                    i = self.digits(i + 1 + sign, 10);
                }
            }
        }
        let junk = match self.dialect {
            Dialect::Postgres => self.at(i).is_some_and(|b| is_ident_start(b, self.dialect)),
            Dialect::MySql => self.at(i).is_some_and(is_ident_cont),
        };
        if junk {
            if self.at(start) == Some(b'.') {
                // `.5a`: the dot stands alone and `5a` lexes next, so `t.5a` and `t. 5a` agree.
                return Token {
                    kind: Tok::Punct,
                    start,
                    end: start + 1,
                };
            }
            let mut j = i;
            while self.at(j).is_some_and(is_ident_cont) {
                j += 1;
            }
            return Token {
                kind: Tok::Word,
                start,
                end: j,
            };
        }
        Token {
            kind: Tok::Num,
            start,
            end: i,
        }
    }

    /// PostgreSQL dollar quote `$tag$ ... $tag$` starting at `start`, if there is one.
    fn dollar_quote(&self, start: usize) -> Option<Token> {
        let mut j = start + 1;
        if self
            .at(j)
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80)
        {
            while self
                .at(j)
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
            {
                j += 1;
            }
        }
        if self.at(j) != Some(b'$') {
            return None;
        }
        let tag = self.src.get(start..=j)?;
        let body = self.src.get(j + 1..)?;
        let end = match memchr::memmem::find(body, tag) {
            Some(k) => j + 1 + k + tag.len(),
            None => self.len(),
        };
        Some(Token {
            kind: Tok::Str,
            start,
            end,
        })
    }

    fn pg_operator(&self, start: usize) -> Token {
        let mut end = start;
        while self.at(end).is_some_and(is_pg_op) {
            // A comment start ends the operator.
            if (self.at(end) == Some(b'/') && self.at(end + 1) == Some(b'*'))
                || (self.at(end) == Some(b'-') && self.at(end + 1) == Some(b'-'))
            {
                break;
            }
            end += 1;
        }
        // scan.l: a multi-character operator cannot end in `+` or `-` unless it contains one of
        // `~ ! @ # % ^ & | ` ?`; so `=-1` is `=` then `-` then `1`.
        let run = self.src.get(start..end).unwrap_or_default();
        if run.len() > 1
            && matches!(run.last(), Some(b'+' | b'-'))
            && !run.iter().any(|b| b"~!@#%^&|`?".contains(b))
        {
            while end - start > 1 && matches!(self.at(end - 1), Some(b'+' | b'-')) {
                end -= 1;
            }
        }
        Token {
            kind: Tok::Op,
            start,
            end: end.max(start + 1),
        }
    }

    fn mysql_operator(&self, start: usize) -> Token {
        let rest = self.src.get(start..).unwrap_or_default();
        let len = MYSQL_OPS
            .iter()
            .find(|op| rest.starts_with(op))
            .map_or(1, |op| op.len());
        Token {
            kind: Tok::Op,
            start,
            end: start + len,
        }
    }

    #[inline]
    fn word(&self, start: usize) -> Token {
        let rest = self.src.get(start + 1..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| !is_ident_cont(b))
            .unwrap_or(rest.len());
        Token {
            kind: Tok::Word,
            start,
            end: start + 1 + len,
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    #[inline]
    fn next(&mut self) -> Option<Token> {
        if !self.skip_trivia() {
            return None;
        }
        let start = self.pos;
        let c = self.at(start)?;
        let c1 = self.at(start + 1);
        let c2 = self.at(start + 2);
        let pg = self.dialect == Dialect::Postgres;
        let tok = match c {
            b'\'' => Token {
                kind: Tok::Str,
                start,
                end: self.quoted_end(start + 1, b'\'', !pg),
            },
            b'"' if pg => Token {
                kind: Tok::QuotedIdent,
                start,
                end: self.quoted_end(start + 1, b'"', false),
            },
            b'"' => Token {
                kind: Tok::Str,
                start,
                end: self.quoted_end(start + 1, b'"', true),
            },
            b'`' if !pg => Token {
                kind: Tok::QuotedIdent,
                start,
                end: self.quoted_end(start + 1, b'`', false),
            },
            // Prefixed strings: E'..' (backslash escapes), B'..', X'..', N'..'.
            b'e' | b'E' if pg && c1 == Some(b'\'') => Token {
                kind: Tok::Str,
                start,
                end: self.quoted_end(start + 2, b'\'', true),
            },
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if c1 == Some(b'\'') => Token {
                kind: Tok::Str,
                start,
                end: self.quoted_end(start + 2, b'\'', !pg),
            },
            // U&'..' strings and U&".." identifiers.
            b'u' | b'U' if pg && c1 == Some(b'&') && c2 == Some(b'\'') => Token {
                kind: Tok::Str,
                start,
                end: self.quoted_end(start + 3, b'\'', false),
            },
            b'u' | b'U' if pg && c1 == Some(b'&') && c2 == Some(b'"') => Token {
                kind: Tok::QuotedIdent,
                start,
                end: self.quoted_end(start + 3, b'"', false),
            },
            b'$' if pg && c1.is_some_and(|b| b.is_ascii_digit()) => {
                let mut end = start + 1;
                while self.at(end).is_some_and(|b| b.is_ascii_digit()) {
                    end += 1;
                }
                Token {
                    kind: Tok::Param,
                    start,
                    end,
                }
            }
            b'$' if pg => self.dollar_quote(start).unwrap_or(Token {
                kind: Tok::Other,
                start,
                end: start + 1,
            }),
            b'0'..=b'9' => self.number(start),
            b'.' if c1.is_some_and(|b| b.is_ascii_digit()) => self.number(start),
            b'@' if !pg => {
                // User and system variables: @v, @@session.v (the `.v` lexes as punctuation).
                let mut end = start + 1;
                if self.at(end) == Some(b'@') {
                    end += 1;
                }
                if self.at(end).is_some_and(is_ident_cont) {
                    while self.at(end).is_some_and(is_ident_cont) {
                        end += 1;
                    }
                    Token {
                        kind: Tok::Word,
                        start,
                        end,
                    }
                } else {
                    Token {
                        kind: Tok::Op,
                        start,
                        end: start + 1,
                    }
                }
            }
            b'?' if !pg => Token {
                kind: Tok::Placeholder,
                start,
                end: start + 1,
            },
            b':' if c1 == Some(b':') => Token {
                kind: Tok::Punct,
                start,
                end: start + 2,
            },
            b':' if c1 == Some(b'=') => Token {
                kind: Tok::Op,
                start,
                end: start + 2,
            },
            b'(' | b')' | b'[' | b']' | b',' | b';' | b'.' | b':' => Token {
                kind: Tok::Punct,
                start,
                end: start + 1,
            },
            _ if is_ident_start(c, self.dialect) => self.word(start),
            _ if pg && is_pg_op(c) => self.pg_operator(start),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'!' | b'~' | b'^' | b'&'
            | b'|' => self.mysql_operator(start),
            _ => Token {
                kind: Tok::Other,
                start,
                end: start + 1,
            },
        };
        // Never stall, never run past the end.
        let end = tok.end.clamp(start + 1, self.len());
        self.pos = end;
        Some(Token { end, ..tok })
    }
}

/// Test support: `sql` as another client might spell it, meaning the same to the server: words
/// re-cased, whitespace or comments between all tokens, and plain string and integer literals
/// replaced by other values of the same kind. `seps`, `cases` and `lits` pick the variants.
#[cfg(test)]
pub(crate) fn respell(
    sql: &str,
    d: Dialect,
    seps: &[usize],
    cases: &[bool],
    lits: &[usize],
) -> String {
    const SEPS: [&str; 7] = [
        " ",
        "  ",
        "\n",
        "\t",
        " /* c */ ",
        " -- c\n",
        "\r\n/* a /* b */ c */\n",
    ];
    const STRINGS: [&str; 4] = ["'x'", "'it''s'", "'zz -- /* not a comment ;'", "''"];
    const INTS: [&str; 3] = ["0", "7", "123456789"];
    let pick = |v: &[usize], i: usize| v.get(i % v.len().max(1)).copied().unwrap_or(0);
    let mut out = String::new();
    for (i, t) in Lexer::new(sql, d).enumerate() {
        let text = sql.get(t.start..t.end).unwrap_or_default();
        if i > 0 {
            let sep = SEPS[pick(seps, i) % SEPS.len()];
            // MySQL block comments do not nest.
            out.push_str(if d == Dialect::MySql && sep.contains("/* b */") {
                " /* a */ "
            } else {
                sep
            });
        }
        let recase = cases.get(i % cases.len().max(1)).copied().unwrap_or(false);
        match t.kind {
            Tok::Word if recase => out.push_str(&text.to_ascii_uppercase()),
            Tok::Str if text.starts_with('\'') => {
                out.push_str(STRINGS[pick(lits, i) % STRINGS.len()])
            }
            Tok::Num if text.bytes().all(|b| b.is_ascii_digit()) => {
                out.push_str(INTS[pick(lits, i) % INTS.len()])
            }
            _ => out.push_str(text),
        }
    }
    out
}
