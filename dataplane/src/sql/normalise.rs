//! Analyse stage, hot path: the normaliser turns a statement batch into its fingerprint, the
//! text the policy sees (`select * from customers where id = ?`) and the hash the decision
//! cache is keyed by.
//!
//! One pass over the lexer's tokens (`lex.rs`, the server's lexical rules): literals become `?`,
//! `in (?, ?, ?)` becomes `in (?)`, adjacent literals (`'a' 'b'`, a continued string) become one
//! `?`, unquoted words fold to lower case, comments go, and tokens are re-spaced by a fixed rule
//! so the input's spacing never matters. `;` separators stay (without the trailing one), so
//! `select 1; drop table x` is not `select 1`. The rendering is injective on token sequences:
//! no space is dropped except next to single-character punctuation or `::`, which never merge
//! with a neighbour, and operators are tagged in the hash so the PostgreSQL `?` operator and a
//! `?` literal cannot collide.
//!
//! The hash is SipHash-1-3 (std's `DefaultHasher`) under a per-process random key. The text is
//! attacker-chosen and the cache trusts the hash: with a public key a 2^32 birthday search would
//! find an allowed statement and a forbidden one with the same 64-bit value. So the hash is for
//! in-process caches only; anything persisted or shared between instances uses `text`.
//!
//! `fingerprint_hash` feeds the same renderer into the hasher alone and allocates nothing.

use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::sync::OnceLock;

use super::lex::{Lexer, Tok, Token};
use super::Dialect;

/// A statement batch with its literals taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Normalised text, e.g. `select abalance from pgbench_accounts where aid = ?`.
    pub text: String,
    /// Keyed hash of the normalised token stream; equals `fingerprint_hash` of the same input.
    pub hash: u64,
}

/// The fingerprint text and hash of `sql`.
pub fn fingerprint(sql: &str, dialect: Dialect) -> Fingerprint {
    let mut sink = TextAndHash {
        text: Vec::with_capacity(sql.len()),
        hash: HashSink::new(dialect),
    };
    render(sql, dialect, &mut sink);
    // Tokens end on ASCII or at the end of input and only ASCII is case-folded, so the text
    // stays UTF-8; the lossy branch is there so that a mistake cannot panic.
    let text = String::from_utf8(sink.text)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Fingerprint {
        text,
        hash: sink.hash.finish(),
    }
}

/// The fingerprint hash of `sql` without building the text: the decision-cache lookup path.
pub fn fingerprint_hash(sql: &str, dialect: Dialect) -> u64 {
    let mut sink = HashSink::new(dialect);
    render(sql, dialect, &mut sink);
    sink.finish()
}

/// Where rendered bytes go.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn put_lower(&mut self, bytes: &[u8]);
    /// A token-kind marker that reaches the hash but not the text.
    fn mark(&mut self);
}

/// 0xFF never occurs in UTF-8, so the marker cannot be mistaken for text.
const OP_MARK: u8 = 0xFF;

fn hash_key() -> &'static RandomState {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
}

struct HashSink {
    hasher: DefaultHasher,
    buf: [u8; 64],
    len: usize,
}

impl HashSink {
    fn new(dialect: Dialect) -> Self {
        let mut hasher = hash_key().build_hasher();
        hasher.write_u8(dialect as u8);
        HashSink {
            hasher,
            buf: [0; 64],
            len: 0,
        }
    }

    /// Copies `bytes` into the buffer through `copy`, handing full buffers to the hasher.
    #[inline]
    fn fill(&mut self, mut bytes: &[u8], copy: impl Fn(&mut [u8], &[u8])) {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.hasher.write(&self.buf);
                self.len = 0;
            }
            let n = (self.buf.len() - self.len).min(bytes.len());
            let (head, rest) = bytes.split_at(n);
            if let Some(dst) = self.buf.get_mut(self.len..self.len + n) {
                copy(dst, head);
            }
            self.len += n;
            bytes = rest;
        }
    }

    fn finish(mut self) -> u64 {
        let tail = self.buf.get(..self.len).unwrap_or_default();
        self.hasher.write(tail);
        self.hasher.finish()
    }
}

impl Sink for HashSink {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.fill(bytes, <[u8]>::copy_from_slice);
    }
    #[inline]
    fn put_lower(&mut self, bytes: &[u8]) {
        self.fill(bytes, |dst, src| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s.to_ascii_lowercase();
            }
        });
    }
    #[inline]
    fn mark(&mut self) {
        self.put(&[OP_MARK]);
    }
}

struct TextAndHash {
    text: Vec<u8>,
    hash: HashSink,
}

impl Sink for TextAndHash {
    fn put(&mut self, bytes: &[u8]) {
        self.text.extend_from_slice(bytes);
        self.hash.put(bytes);
    }
    fn put_lower(&mut self, bytes: &[u8]) {
        self.text.extend(bytes.iter().map(u8::to_ascii_lowercase));
        self.hash.put_lower(bytes);
    }
    fn mark(&mut self) {
        self.hash.mark();
    }
}

/// Token classes as far as spacing and collapsing care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cls {
    Start,
    Word,
    QuotedIdent,
    Lit,
    Param,
    Op,
    Open,
    OpenBracket,
    Close,
    Comma,
    Semi,
    Dot,
    Cast,
    Colon,
    Other,
}

#[inline]
fn classify(kind: Tok, bytes: &[u8]) -> Cls {
    match kind {
        Tok::Word => Cls::Word,
        Tok::QuotedIdent => Cls::QuotedIdent,
        Tok::Str | Tok::Num | Tok::Placeholder => Cls::Lit,
        Tok::Param => Cls::Param,
        Tok::Op => Cls::Op,
        Tok::Other => Cls::Other,
        Tok::Punct => match bytes.first() {
            Some(b'(') => Cls::Open,
            Some(b'[') => Cls::OpenBracket,
            Some(b')' | b']') => Cls::Close,
            Some(b',') => Cls::Comma,
            Some(b';') => Cls::Semi,
            Some(b'.') => Cls::Dot,
            Some(b':') if bytes.len() == 2 => Cls::Cast,
            _ => Cls::Colon,
        },
    }
}

/// Words after which `(` keeps its space (`in (?)`, `values (?)`); after any other word it is
/// a call (`count(*)`). Cosmetic only: either way the rendering stays unambiguous.
const SPACED_BEFORE_PAREN: &[&[u8]] = &[
    b"in",
    b"values",
    b"as",
    b"from",
    b"join",
    b"on",
    b"where",
    b"and",
    b"or",
    b"not",
    b"exists",
    b"any",
    b"all",
    b"some",
    b"select",
    b"using",
    b"with",
    b"when",
    b"then",
    b"else",
    b"by",
    b"set",
    b"into",
    b"table",
    b"returning",
    b"lateral",
    b"union",
    b"intersect",
    b"except",
    b"case",
    b"between",
    b"is",
    b"like",
    b"ilike",
    b"having",
    b"limit",
    b"offset",
    b"over",
    b"filter",
    b"distinct",
    b"do",
    b"conflict",
    b"key",
    b"references",
    b"unique",
    b"check",
    b"default",
    b"recursive",
    b"materialized",
    b"window",
    b"partition",
    b"copy",
    b"analyze",
    b"explain",
    b"vacuum",
    b"execute",
    b"call",
    b"prepare",
    b"grant",
];

fn spaced_before_paren(word: &[u8]) -> bool {
    SPACED_BEFORE_PAREN
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
}

/// State of the `in (?, ?, ...)` collapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InList {
    No,
    SawIn,
    SawOpen,
    /// Inside `in (?`: `extra` further `, ?` pairs swallowed, `after_comma` if a `,` is pending.
    List {
        extra: u32,
        after_comma: bool,
    },
}

struct Renderer<'s, S: Sink> {
    src: &'s [u8],
    sink: &'s mut S,
    prev: Cls,
    /// Span of the previous word, for the spacing of a following `(`.
    prev_word: (usize, usize),
    pending_semi: bool,
    in_list: InList,
}

fn render<S: Sink>(sql: &str, dialect: Dialect, sink: &mut S) {
    let mut r = Renderer {
        src: sql.as_bytes(),
        sink,
        prev: Cls::Start,
        prev_word: (0, 0),
        pending_semi: false,
        in_list: InList::No,
    };
    for token in Lexer::new(sql, dialect) {
        r.token(token);
    }
    r.flush_list();
}

impl<S: Sink> Renderer<'_, S> {
    fn token(&mut self, t: Token) {
        let bytes = self.src.get(t.start..t.end).unwrap_or_default();
        let cls = classify(t.kind, bytes);
        if cls == Cls::Semi {
            // Deferred: repeated and trailing separators vanish.
            self.flush_list();
            self.pending_semi = true;
            return;
        }
        if let InList::List { extra, after_comma } = &mut self.in_list {
            match cls {
                Cls::Comma if !*after_comma => {
                    *after_comma = true;
                    return;
                }
                Cls::Lit if *after_comma => {
                    *extra += 1;
                    *after_comma = false;
                    return;
                }
                Cls::Close if !*after_comma && bytes == b")" => {}
                _ => self.flush_list(),
            }
        }
        if self.pending_semi {
            self.pending_semi = false;
            if self.prev != Cls::Start {
                self.emit(Cls::Semi, b";", (t.start, t.start));
            }
        }
        self.emit(cls, bytes, (t.start, t.end));
        self.in_list = match (self.in_list, cls) {
            (_, Cls::Word) if bytes.eq_ignore_ascii_case(b"in") => InList::SawIn,
            (InList::SawIn, Cls::Open) if bytes == b"(" => InList::SawOpen,
            (InList::SawOpen, Cls::Lit) => InList::List {
                extra: 0,
                after_comma: false,
            },
            _ => InList::No,
        };
    }

    /// Gives back what an unfinished `in (?, ?, x` swallowed.
    fn flush_list(&mut self) {
        if let InList::List { extra, after_comma } = self.in_list {
            self.in_list = InList::No;
            for _ in 0..extra {
                self.emit(Cls::Comma, b",", (0, 0));
                self.emit(Cls::Lit, b"?", (0, 0));
            }
            if after_comma {
                self.emit(Cls::Comma, b",", (0, 0));
            }
        }
    }

    fn space_before(&self, next: Cls) -> bool {
        use Cls::*;
        let prev = self.prev;
        match (prev, next) {
            (Start, _) | (_, Close | Comma | Dot | Semi) | (Open | OpenBracket | Dot, _) => false,
            (_, Cast) => !matches!(prev, Word | QuotedIdent | Lit | Param | Close),
            (Cast, _) => !matches!(next, Word | QuotedIdent),
            (QuotedIdent, Open) => false,
            (Word, Open) => {
                let word = self
                    .src
                    .get(self.prev_word.0..self.prev_word.1)
                    .unwrap_or_default();
                spaced_before_paren(word)
            }
            (_, OpenBracket) => !matches!(prev, Word | QuotedIdent | Close | Param | Lit),
            _ => true,
        }
    }

    fn emit(&mut self, cls: Cls, bytes: &[u8], span: (usize, usize)) {
        if cls == Cls::Lit && self.prev == Cls::Lit {
            return;
        }
        if self.space_before(cls) {
            self.sink.put(b" ");
        }
        match cls {
            Cls::Word => {
                self.sink.put_lower(bytes);
                self.prev_word = span;
            }
            Cls::QuotedIdent => {
                // Only a `U&` prefix folds; the quoted part keeps its case.
                let quote = bytes
                    .iter()
                    .position(|&b| b == b'"' || b == b'`')
                    .unwrap_or(0);
                let (prefix, rest) = bytes.split_at(quote);
                self.sink.put_lower(prefix);
                self.sink.put(rest);
            }
            Cls::Lit => self.sink.put(b"?"),
            Cls::Op => {
                self.sink.mark();
                self.sink.put(if bytes == b"!=" { b"<>" } else { bytes });
            }
            _ => self.sink.put(bytes),
        }
        self.prev = cls;
    }
}

#[cfg(test)]
#[path = "normalise_tests.rs"]
mod tests;
