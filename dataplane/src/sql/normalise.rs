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
//! The hash is SipHash-1-3 under a per-process random key. The text is attacker-chosen and the
//! cache trusts the hash: with a public key, a 2^32 birthday search would find an allowed
//! statement and a forbidden one with the same 64-bit value. So the hash is for in-process
//! caches only; anything persisted or shared between instances (recordings, approvals) uses
//! `text`.
//!
//! `fingerprint_hash` feeds the same renderer into the hasher alone and allocates nothing.

use std::sync::OnceLock;

use super::lex::{Lexer, Tok, Token};
use super::Dialect;

/// A statement batch with its literals taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Normalised text, e.g. `select abalance from pgbench_accounts where aid = ?`.
    pub text: String,
    /// Keyed hash of the normalised token stream; equals `fingerprint_hash` of the same input.
    /// The key is drawn per process: compare hashes within one process only.
    pub hash: u64,
}

/// The fingerprint text and hash of `sql`.
pub fn fingerprint(sql: &str, dialect: Dialect) -> Fingerprint {
    let mut sink = TextAndHash {
        text: TextSink(Vec::with_capacity(sql.len())),
        hash: HashSink::new(dialect),
    };
    render(sql, dialect, &mut sink);
    Fingerprint {
        text: sink.text.into_string(),
        hash: sink.hash.finish(),
    }
}

/// The fingerprint text of `sql` without the hash: what a decision-cache miss puts in the
/// policy input, after the lookup has hashed the statement with `fingerprint_hash`.
pub fn fingerprint_text(sql: &str, dialect: Dialect) -> String {
    let mut sink = TextSink(Vec::with_capacity(sql.len()));
    render(sql, dialect, &mut sink);
    sink.into_string()
}

/// The fingerprint hash of `sql` without building the text: the decision-cache lookup path.
pub fn fingerprint_hash(sql: &str, dialect: Dialect) -> u64 {
    let mut sink = HashSink::new(dialect);
    render(sql, dialect, &mut sink);
    sink.finish()
}

/// SipHash-1-3 of `words`, each as its eight little-endian bytes, under `key`: the value std's
/// `DefaultHasher` with that key gives for `write_u64` of each word, without its byte-at-a-time
/// buffering. The decision cache mixes its keys with it (`policy::cache`).
pub(crate) fn sip13_words(key: (u64, u64), words: &[u64]) -> u64 {
    let mut sink = HashSink::<1, 3>::with_key(key.0, key.1);
    for &word in words {
        sink.push(word, 8);
    }
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

/// The per-process SipHash key, drawn once.
fn hash_key() -> (u64, u64) {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    *KEY.get_or_init(|| (rand::random(), rand::random()))
}

/// Streaming SipHash-c-d (Aumasson & Bernstein, <https://www.aumasson.jp/siphash/siphash.pdf>)
/// compressing each eight bytes as the renderer produces them: its output is never stored.
/// The fingerprint uses SipHash-1-3, the variant std's `HashMap` relies on against chosen input.
struct HashSink<const C: usize = 1, const D: usize = 3> {
    v: [u64; 4],
    /// Bytes not yet compressed, little-endian, `pending` of them.
    word: u64,
    pending: u32,
    len: u64,
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

impl HashSink {
    fn new(dialect: Dialect) -> Self {
        let (k0, k1) = hash_key();
        let mut sink = HashSink::with_key(k0, k1);
        sink.push(dialect as u64, 1);
        sink
    }
}

impl<const C: usize, const D: usize> HashSink<C, D> {
    fn with_key(k0: u64, k1: u64) -> Self {
        HashSink {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            word: 0,
            pending: 0,
            len: 0,
        }
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        for _ in 0..C {
            sip_round(&mut self.v);
        }
        self.v[0] ^= m;
    }

    /// Appends the low `n` bytes of `m` (the rest zero) to the stream, compressing each full
    /// word as it completes.
    #[inline(always)]
    fn push(&mut self, m: u64, n: u32) {
        self.word |= m << (8 * self.pending);
        let total = self.pending + n;
        if total >= 8 {
            let full = self.word;
            self.compress(full);
            self.len += 8;
            // What did not fit: the top `pending` bytes of `m`.
            self.word = match self.pending {
                0 => 0,
                p => m >> (8 * (8 - p)),
            };
            self.pending = total - 8;
        } else {
            self.pending = total;
        }
    }

    fn finish(mut self) -> u64 {
        let len = self.len + u64::from(self.pending);
        let m = self.word | (len << 56);
        self.compress(m);
        self.v[2] ^= 0xff;
        for _ in 0..D {
            sip_round(&mut self.v);
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

/// Up to eight bytes as a little-endian word (the rest zero).
///
/// Most chunks are shorter than eight bytes (a space, a short word), so those are read as two
/// overlapping halves, first and last: an overlapping byte lands on the same bits from both
/// and the OR keeps it. That is two loads where a byte loop took one step per byte.
#[inline(always)]
fn load(chunk: &[u8]) -> u64 {
    let n = chunk.len();
    if let Some(word) = chunk.first_chunk::<8>() {
        return u64::from_le_bytes(*word);
    }
    if let (Some(lo), Some(hi)) = (chunk.first_chunk::<4>(), chunk.last_chunk::<4>()) {
        return u64::from(u32::from_le_bytes(*lo))
            | u64::from(u32::from_le_bytes(*hi)) << (8 * (n - 4));
    }
    if let (Some(lo), Some(hi)) = (chunk.first_chunk::<2>(), chunk.last_chunk::<2>()) {
        return u64::from(u16::from_le_bytes(*lo))
            | u64::from(u16::from_le_bytes(*hi)) << (8 * (n - 2));
    }
    chunk.first().map_or(0, |&b| u64::from(b))
}

/// ASCII `A`-`Z` to lower case in all eight bytes at once; other bytes unchanged.
#[inline(always)]
fn lower(m: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let h = m & LOW7;
    let ge_a = h + ONES * (0x80 - u64::from(b'A'));
    let gt_z = h + ONES * (0x80 - u64::from(b'Z') - 1);
    let upper = ge_a & !gt_z & !m & HIGH;
    m | (upper >> 2)
}

impl<const C: usize, const D: usize> Sink for HashSink<C, D> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            self.push(load(chunk), chunk.len() as u32);
        }
    }
    #[inline(always)]
    fn put_lower(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            self.push(lower(load(chunk)), chunk.len() as u32);
        }
    }
    #[inline(always)]
    fn mark(&mut self) {
        self.push(u64::from(OP_MARK), 1);
    }
}

/// The rendered text; markers are for the hash only.
struct TextSink(Vec<u8>);

impl TextSink {
    fn into_string(self) -> String {
        // Tokens end on ASCII or at the end of input and only ASCII is case-folded, so the
        // text stays UTF-8; the lossy branch is there so that a mistake cannot panic.
        String::from_utf8(self.0)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl Sink for TextSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn put_lower(&mut self, bytes: &[u8]) {
        self.0.extend(bytes.iter().map(u8::to_ascii_lowercase));
    }
    fn mark(&mut self) {}
}

struct TextAndHash {
    text: TextSink,
    hash: HashSink,
}

impl Sink for TextAndHash {
    fn put(&mut self, bytes: &[u8]) {
        self.text.put(bytes);
        self.hash.put(bytes);
    }
    fn put_lower(&mut self, bytes: &[u8]) {
        self.text.put_lower(bytes);
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

#[inline(always)]
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
    #[inline(always)]
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

    #[inline(always)]
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

    #[inline(always)]
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
