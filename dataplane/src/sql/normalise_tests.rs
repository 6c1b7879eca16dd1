//! Analyse stage: unit and property tests of the normaliser. What a user checks: the same
//! statement written differently shares a fingerprint, a different statement does not, no
//! literal value survives, and nothing a client sends can make it panic.

use super::*;
use crate::sql::lex::respell;
use proptest::prelude::*;

const PG: Dialect = Dialect::Postgres;
const MY: Dialect = Dialect::MySql;

fn fp(sql: &str) -> String {
    fingerprint(sql, PG).text
}

fn fp_my(sql: &str) -> String {
    fingerprint(sql, MY).text
}

#[test]
fn pgbench_select() {
    let f = fingerprint(
        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
        PG,
    );
    assert_eq!(
        f.text,
        "select abalance from pgbench_accounts where aid = ?"
    );
    assert_eq!(
        f.hash,
        fingerprint_hash("select abalance from pgbench_accounts where aid = 7", PG)
    );
}

#[test]
fn pgbench_tpcb_set() {
    let cases = [
        (
            "UPDATE pgbench_accounts SET abalance = abalance + -4242 WHERE aid = 77;",
            "update pgbench_accounts set abalance = abalance + - ? where aid = ?",
        ),
        (
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 77, -4242, CURRENT_TIMESTAMP);",
            "insert into pgbench_history(tid, bid, aid, delta, mtime) values (?, ?, ?, - ?, current_timestamp)",
        ),
        ("BEGIN;", "begin"),
        ("END;", "end"),
    ];
    for (sql, want) in cases {
        assert_eq!(fp(sql), want, "{sql}");
    }
}

#[test]
fn design_example() {
    assert_eq!(
        fp("SELECT * FROM customers WHERE id = 42"),
        "select * from customers where id = ?"
    );
}

#[test]
fn respacing_recasing_and_comments_do_not_matter() {
    let base = fp("select a, b from t where x = 1 and y in (1, 2)");
    for variant in [
        "SELECT a,b FROM t WHERE x=1 AND y IN (1,2)",
        "select\ta ,\n b from t -- trailing\n where x = 1 and y in(1, 2);",
        "/* head */ select /* in /* nested */ between */ a, b from t where x = 1 and y in (3)",
        "select a, b from t where x = 'one' and y in ($$a$$, E'\\'', 1e10, .5, 0x1F, 1_000)",
    ] {
        assert_eq!(fp(variant), base, "{variant}");
    }
}

#[test]
fn different_structures_differ() {
    let pairs = [
        ("select a from t", "select b from t"),
        ("delete from t", "delete from t where id = 1"),
        ("select 1", "select 1; drop table x"),
        ("select * from customers", "select * from \"Customers\""),
        (
            "select * from t where a = 1",
            "select * from t where a = $1",
        ),
        (
            "select * from t where a in (1)",
            "select * from t where a in (1, b)",
        ),
        ("select a - -1", "select a - 1"),
        ("select x from t", "select x from t for update"),
        ("select a.b from t", "select a, b from t"),
        ("select $1", "select $2"),
    ];
    for (a, b) in pairs {
        assert_ne!(fp(a), fp(b), "{a} | {b}");
        assert_ne!(
            fingerprint_hash(a, PG),
            fingerprint_hash(b, PG),
            "{a} | {b}"
        );
    }
}

#[test]
fn literal_forms_become_placeholders() {
    for lit in [
        "'plain'",
        "'it''s'",
        "E'a\\'b'",
        "e'\\\\'",
        "U&'d\\0061t\\+000061'",
        "B'1010'",
        "X'1F'",
        "N'nat'",
        "$$dollar ' \" -- /* body$$",
        "$tag$ has $$ inside $tag$",
        "42",
        "1e10",
        "1.5E-3",
        ".5",
        "1.",
        "0x1F",
        "0o17",
        "0b101",
        "1_000_000",
    ] {
        assert_eq!(
            fp(&format!("select {lit} from t")),
            "select ? from t",
            "{lit}"
        );
    }
}

#[test]
fn params_stay_and_in_lists_collapse() {
    assert_eq!(
        fp("select * from t where id = $1 and x = $2"),
        "select * from t where id = $1 and x = $2"
    );
    assert_eq!(
        fp("select * from t where id in (1, 2, 3)"),
        "select * from t where id in (?)"
    );
    assert_eq!(
        fp("select * from t where id not in ('a','b')"),
        "select * from t where id not in (?)"
    );
    assert_eq!(
        fp("select * from t where id in ($1, $2)"),
        "select * from t where id in ($1, $2)"
    );
    assert_eq!(
        fp("select * from t where id in (1, a, 2)"),
        "select * from t where id in (?, a, ?)"
    );
    assert_eq!(
        fp("select * from t where id in (1, 2"),
        "select * from t where id in (?, ?"
    );
    assert_eq!(fp("select 1 in (1, 2), 3"), "select ? in (?), ?");
}

#[test]
fn quoted_identifiers_keep_case() {
    assert_eq!(
        fp("SELECT \"Email\" FROM \"Customers\""),
        "select \"Email\" from \"Customers\""
    );
    assert_eq!(
        fp("select U&\"d\\0061ta\" from t"),
        "select u&\"d\\0061ta\" from t"
    );
    assert_eq!(
        fp_my("SELECT `Name` FROM `Users`"),
        "select `Name` from `Users`"
    );
}

#[test]
fn batches_keep_their_separators() {
    assert_eq!(fp("select 1; drop table x;"), "select ?; drop table x");
    assert_eq!(fp(";; select 1 ;;; select 2 ;"), "select ?; select ?");
    assert_eq!(fp("select 1;"), fp("select 1"));
}

#[test]
fn postgres_lexical_rules() {
    // Standard strings have no backslash escape: the string ends at the second quote.
    assert_eq!(fp("select 'a\\' , b from t"), "select ?, b from t");
    // E'' strings do.
    assert_eq!(fp("select e'a\\' , b from t'"), "select ?");
    // Nested block comments.
    assert_eq!(fp("select /* a /* b */ still comment */ 1"), "select ?");
    // Operators: `=-` is `=` then `-`; `!=` is `<>`; `--` inside an operator starts a comment.
    assert_eq!(
        fp("select * from t where a=-1"),
        fp("select * from t where a = - 1")
    );
    assert_eq!(
        fp("select * from t where a != 1"),
        fp("select * from t where a <> 1")
    );
    assert_eq!(fp("select a <--1\n from t"), "select a < from t");
    // jsonb `?` operator and a literal do not merge in the hash.
    assert_ne!(
        fingerprint_hash("select a ? 'k' from t", PG),
        fingerprint_hash("select a 'x' 'k' from t", PG)
    );
    // `$` inside identifiers, dollar quotes at a token start only.
    assert_eq!(fp("select a$b$ from t"), "select a$b$ from t");
    assert_eq!(
        fp("select x::int, y::\"T\", z[1:2] from t"),
        "select x::int, y::\"T\", z[? : ?] from t"
    );
    // Trailing junk after a number is kept, not taken for a literal.
    assert_eq!(fp("select 1abc"), "select 1abc");
}

#[test]
fn mysql_lexical_rules() {
    assert_eq!(
        fp_my("SELECT `a` FROM t # comment\nWHERE b = \"x\\\"y\""),
        "select `a` from t where b = ?"
    );
    // `--` without a following space is two minus signs.
    assert_eq!(fp_my("select 1--1"), "select ? - - ?");
    assert_eq!(fp_my("select 1 -- c\n"), "select ?");
    // Block comments do not nest; executable comments are code.
    assert_eq!(fp_my("/* a /* b */ select 1"), "select ?");
    assert_eq!(
        fp_my("select /*!40001 SQL_NO_CACHE */ * from t"),
        "select sql_no_cache * from t"
    );
    assert_eq!(
        fp_my("select 1 /*!50000 ; drop table x */"),
        "select ?; drop table x"
    );
    assert_eq!(fp_my("select /*M!100100 1, */ 2"), "select ?, ?");
    // Backslash and doubled escapes in both quote styles.
    assert_eq!(
        fp_my("select 'it\\'s', 'it''s', \"a\"\"b\" from t"),
        "select ?, ?, ? from t"
    );
    // Identifiers may start with digits; `?` is a placeholder; `@` variables are names.
    assert_eq!(
        fp_my("select 12monkeys, ? from t where @Var = 1"),
        "select 12monkeys, ? from t where @var = ?"
    );
    // MySQL `#` is a comment, PostgreSQL `#` is an operator.
    assert_ne!(fp("select 1 # 2"), fp("select 1"));
    assert_eq!(fp_my("select 1 # 2"), fp_my("select 1"));
}

#[test]
fn unterminated_input_is_the_rest_of_the_token() {
    assert_eq!(fp("select 'abc"), "select ?");
    assert_eq!(fp("select $$abc"), "select ?");
    assert_eq!(fp("select E'abc\\"), "select ?");
    assert_eq!(fp("select /* abc"), "select");
    assert_eq!(fp("select \"abc"), "select \"abc");
    assert_eq!(fp_my("select `abc"), "select `abc");
    assert_eq!(fp_my("select /*! 1"), "select ?");
    assert_eq!(fp(""), "");
    assert_eq!(fp("  -- only a comment"), "");
}

#[test]
fn siphash_matches_the_reference_vectors() {
    // SipHash-2-4, key 00..0f, message 00..(n-1): the paper's test vectors.
    let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
    let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
    let hash = |n: u8| {
        let mut h = HashSink::<2, 4>::with_key(k0, k1);
        h.put(&(0..n).collect::<Vec<u8>>());
        h.finish()
    };
    assert_eq!(hash(0), 0x726f_db47_dd0e_0e31);
    assert_eq!(hash(1), 0x74f8_39c5_93dc_67fd);
    assert_eq!(hash(8), 0x93f5_f579_9a93_2462);
    assert_eq!(hash(15), 0xa129_ca61_49be_45e5);
}

#[test]
fn load_reads_every_length_little_endian() {
    let bytes: Vec<u8> = (1..=8).map(|b| b * 0x11).collect();
    for n in 0..=8 {
        let chunk = &bytes[..n];
        let want = chunk
            .iter()
            .enumerate()
            .fold(0u64, |m, (i, &b)| m | u64::from(b) << (8 * i));
        assert_eq!(load(chunk), want, "{n} bytes");
    }
}

#[test]
fn sip13_words_is_siphash_of_the_words_bytes() {
    let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
    for words in [&[][..], &[1], &[u64::MAX, 0, 0x0123_4567_89ab_cdef]] {
        let mut bytes = HashSink::<1, 3>::with_key(key.0, key.1);
        for w in words {
            bytes.put(&w.to_le_bytes());
        }
        assert_eq!(sip13_words(key, words), bytes.finish(), "{words:?}");
    }
}

#[test]
fn word_at_a_time_lower_case_is_ascii_lower_case() {
    for b in 0..=255u8 {
        let m = u64::from_le_bytes([b, b'A', b'z', b'Z', 0x80 | b'A', b'@', b'[', b]);
        let want = u64::from_le_bytes(
            [b, b'A', b'z', b'Z', 0x80 | b'A', b'@', b'[', b].map(|x| x.to_ascii_lowercase()),
        );
        assert_eq!(lower(m), want, "{b:#x}");
    }
}

#[test]
fn dialects_hash_apart() {
    assert_ne!(
        fingerprint_hash("select 1", PG),
        fingerprint_hash("select 1", MY)
    );
}

const CORPUS: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = 12345",
    "UPDATE pgbench_tellers SET tbalance = tbalance + 12 WHERE tid = 3",
    "select c.oid, n.nspname from pg_catalog.pg_class c left join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.relname operator(pg_catalog.~) '^(customers)$' collate pg_catalog.default order by 2, 3",
    "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" IN (1, 2, 3) LIMIT 10 OFFSET 20",
    "with d as (delete from customers where id = $1 returning *) select * from d",
    "select x::numeric(10,2), y[1], e'\\n', $q$ body $q$ from t where a >= -1.5e3 and b <> 'x'",
    "insert into t (a, b) values (1, 'two'), (3, 'four') on conflict (a) do update set b = excluded.b",
    "select 1; drop table customers",
];

const MYSQL_CORPUS: &[&str] = &[
    "SELECT `id`, name FROM `users` WHERE email = \"a@b.c\" AND age > 30 LIMIT 5",
    "select /*!40001 SQL_NO_CACHE */ * from t where a = 'x\\'y'",
    "update t set a = a - -1, b = @v where id in (1, 2)",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// However the renderer splits its output, the hash is the same.
    #[test]
    fn hash_does_not_depend_on_how_bytes_arrive(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        cuts in proptest::collection::vec(0usize..80, 0..12),
    ) {
        let mut whole = HashSink::<1, 3>::with_key(1, 2);
        whole.put(&bytes);
        let mut pieces = HashSink::<1, 3>::with_key(1, 2);
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
        cuts.sort_unstable();
        let mut last = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            pieces.put(&bytes[last..c]);
            last = c;
        }
        prop_assert_eq!(whole.finish(), pieces.finish());
    }

    #[test]
    fn respelled_statements_share_a_fingerprint(
        which in 0..CORPUS.len() + MYSQL_CORPUS.len(),
        seps in proptest::collection::vec(0usize..7, 1..16),
        cases in proptest::collection::vec(any::<bool>(), 1..16),
        lits in proptest::collection::vec(0usize..12, 1..8),
    ) {
        let (sql, d) = match CORPUS.get(which) {
            Some(s) => (*s, PG),
            None => (MYSQL_CORPUS[which - CORPUS.len()], MY),
        };
        let respelled = respell(sql, d, &seps, &cases, &lits);
        let a = fingerprint(sql, d);
        let b = fingerprint(&respelled, d);
        prop_assert_eq!(&a.text, &b.text, "{}", respelled);
        prop_assert_eq!(a.hash, b.hash);
    }

    #[test]
    fn literal_values_never_reach_the_fingerprint(
        marker in "[a-z]{6,10}",
        number in 10_000u64..u64::MAX,
        frac in 1u32..u32::MAX,
        form in 0usize..8,
        template in 0usize..4,
    ) {
        // The marker and the digits are what must not survive.
        let lit = match form {
            0 => format!("'zq{marker}'"),
            1 => format!("'zq{marker}''s'"),
            2 => format!("E'zq{marker}\\''"),
            3 => format!("$$zq{marker}$$"),
            4 => format!("$t$zq{marker}$t$"),
            5 => format!("{number}"),
            6 => format!("{number}.{frac}e-7"),
            _ => format!("U&'zq{marker}'"),
        };
        let sql = match template {
            0 => format!("select a from t where b = {lit}"),
            1 => format!("insert into t (a, b) values ({lit}, {lit})"),
            2 => format!("update t set a = {lit} where id in ({lit}, {lit}, {lit})"),
            _ => format!("select f({lit}), {lit}::text from t limit {lit}"),
        };
        let f = fingerprint(&sql, PG);
        prop_assert!(!f.text.contains(&format!("zq{marker}")), "{}", f.text);
        prop_assert!(!f.text.contains(&number.to_string()), "{}", f.text);
        // And every literal value gives the same fingerprint.
        let other = sql.replace(&lit, "'other'");
        prop_assert_eq!(f.hash, fingerprint_hash(&other, PG));

        let my_lit = match form {
            0 | 3 | 4 => format!("'zq{marker}'"),
            1 | 2 => format!("\"zq{marker}\\\"\""),
            7 => format!("X'{number:x}'"),
            _ => format!("{number}"),
        };
        let my_sql = sql.replace(&lit, &my_lit);
        let m = fingerprint(&my_sql, MY);
        prop_assert!(!m.text.contains(&format!("zq{marker}")), "{}", m.text);
        prop_assert!(!m.text.contains(&number.to_string()), "{}", m.text);
    }

    #[test]
    fn never_panics_and_all_paths_agree(
        sql in "([-'\"$/*#`\\\\eEuUxXbBnN&0-9a-z;(),.:!=<>?@ \n\t]|\\PC){0,64}",
        mysql in any::<bool>(),
    ) {
        let d = if mysql { MY } else { PG };
        let f = fingerprint(&sql, d);
        prop_assert_eq!(f.hash, fingerprint_hash(&sql, d));
        prop_assert_eq!(&f.text, &fingerprint_text(&sql, d));
        prop_assert_eq!(fingerprint(&sql, d), f);
    }
}
