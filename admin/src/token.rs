//! `tollctl token`: mint tokens with the embedded development issuer, and look inside tokens.
//!
//! `issue` prints the signed token alone on the last line of stdout (so that
//! `TOKEN=$(tollctl token issue --sub alice | tail -1)` works) and everything else on stderr.
//! `inspect` decodes without verifying: it is for reading a token, never for trusting one.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use tollgate::identity::{self, LocalIssuer, TokenRequest};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token with the local issuer key (the key pair is created on first use).
    Issue(IssueArgs),
    /// Show a token's header and claims, with its times. The token is NOT verified.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Subject of the token (`sub`), e.g. alice@example.com.
    #[arg(long)]
    sub: String,
    /// Groups, comma separated (e.g. eng,dba).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Lifetime: a number and a unit, s, m, h or d (30s, 15m, 1h, 7d; 1h30m also works).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Directory of the issuer key pair [default: $TOLLGATE_KEY_DIR, else
    /// $XDG_DATA_HOME/tollgate/keys, else ~/.local/share/tollgate/keys].
    #[arg(long, value_name = "DIR")]
    key_dir: Option<PathBuf>,
    /// Issuer (`iss`); the gateway's identity.issuer must match.
    #[arg(long, default_value = "tollgate-local")]
    issuer: String,
    /// Audience (`aud`); the gateway's identity.audience must match.
    #[arg(long, default_value = "tollgate")]
    audience: String,
    /// Kind of principal (`kind` claim); the gateway reports "human" when it is absent.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Human,
    Bot,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The token, or "-" to read it from stdin.
    token: String,
    /// Print {"header": ..., "claims": ...} as one JSON document and nothing else.
    #[arg(long)]
    json: bool,
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Issue(args) => issue(args),
        TokenCommand::Inspect(args) => inspect(args),
    }
}

fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let dir = args.key_dir.unwrap_or_else(LocalIssuer::default_dir);
    let issuer = LocalIssuer::load_or_create(&dir)
        .with_context(|| format!("cannot use the issuer key pair in {}", dir.display()))?;
    let request = TokenRequest {
        sub: args.sub,
        groups: args.groups.into_iter().filter(|g| !g.is_empty()).collect(),
        ttl: args.ttl,
        issuer: args.issuer,
        audience: args.audience,
        kind: args.kind.map(|k| match k {
            Kind::Human => "human".to_owned(),
            Kind::Bot => "bot".to_owned(),
        }),
    };
    let token = issuer.issue(&request)?;
    if issuer.created() {
        eprintln!(
            "created a new issuer key pair in {}",
            issuer.dir().display()
        );
    }
    eprintln!(
        "JWKS: {} (kid {}); set identity.issuer = {:?} and identity.jwks_file to this path",
        issuer.jwks_path().display(),
        issuer.kid(),
        request.issuer
    );
    eprintln!(
        "token for {} valid for {}:",
        request.sub,
        human_duration(request.ttl.as_secs())
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")
        .and_then(|()| out.flush())
        .context("cannot write the token to stdout")
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let token = if args.token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the token from stdin")?;
        text
    } else {
        args.token
    };
    let (header, claims) = identity::inspect(&token).context("cannot decode the token")?;
    let mut text = String::new();
    if args.json {
        let doc = serde_json::json!({ "header": header, "claims": claims });
        text.push_str(&serde_json::to_string_pretty(&doc)?);
        text.push('\n');
    } else {
        let now = unix_now();
        text.push_str(
            "NOT VERIFIED: decoded only; signature, issuer and audience are not checked\n",
        );
        text.push_str("header:\n");
        text.push_str(&serde_json::to_string_pretty(&header)?);
        text.push_str("\nclaims:\n");
        text.push_str(&serde_json::to_string_pretty(&claims)?);
        text.push('\n');
        for name in ["iat", "nbf", "exp"] {
            if let Some(value) = claims.get(name) {
                text.push_str(&format!("{name}: {}\n", describe_time(name, value, now)));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// A time claim as RFC 3339 with how it relates to now.
fn describe_time(name: &str, value: &Value, now: i64) -> String {
    let Some(at) = value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    }) else {
        return format!("{value} (not a number of seconds)");
    };
    let Some(date) = rfc3339(at) else {
        return format!("{at} (outside years 1970 to 9999)");
    };
    let past = now >= at;
    let distance = human_duration(now.abs_diff(at));
    let relation = match (name, past) {
        ("exp", true) => format!("expired {distance} ago"),
        ("exp", false) => format!("valid for {distance}"),
        ("nbf", false) => format!("not valid for another {distance}"),
        (_, true) => format!("{distance} ago"),
        (_, false) => format!("in {distance}"),
    };
    format!("{date} ({relation})")
}

/// `--ttl`: one or more `<number><unit>` groups, unit s, m, h or d.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!("{text:?} is not a lifetime; use a number and a unit s, m, h or d, e.g. 30s, 15m, 1h, 7d")
    };
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.trim().chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(invalid)?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let n = number.take().ok_or_else(invalid)?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
    }
    if number.is_some() || text.trim().is_empty() {
        return Err(invalid());
    }
    if total == 0 {
        return Err(format!("{text:?}: the lifetime must be at least 1s"));
    }
    Ok(Duration::from_secs(total))
}

/// "7d 2h", "59m 58s", "12s": the two largest units.
fn human_duration(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if shown.is_empty() {
        "0s".to_owned()
    } else {
        shown.join(" ")
    }
}

/// Unix seconds as RFC 3339 UTC, for years 1970 to 9999.
fn rfc3339(unix: i64) -> Option<String> {
    if !(0..=253_402_300_799).contains(&unix) {
        return None;
    }
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_units_and_sums() {
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn ttl_rejects_what_is_not_a_lifetime() {
        for bad in [
            "",
            "5",
            "h",
            "1x",
            "1h5",
            "-1h",
            "0s",
            "1.5h",
            "99999999999999999999d",
        ] {
            let err = parse_ttl(bad).expect_err(bad);
            assert!(err.contains("lifetime"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            rfc3339(1_700_000_000).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            rfc3339(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(rfc3339(-1), None);
        assert_eq!(rfc3339(i64::MAX), None);
    }

    #[test]
    fn times_say_expired_or_valid_for() {
        let now = 1_700_000_000;
        assert_eq!(
            describe_time("exp", &Value::from(now + 3599), now),
            "2023-11-14T23:13:19Z (valid for 59m 59s)"
        );
        assert_eq!(
            describe_time("exp", &Value::from(now - 7 * 86_400 - 7200), now),
            "2023-11-07T20:13:20Z (expired 7d 2h ago)"
        );
        assert_eq!(
            describe_time("iat", &Value::from(now), now),
            "2023-11-14T22:13:20Z (0s ago)"
        );
        assert!(describe_time("exp", &Value::from("soon"), now).contains("not a number"));
    }

    #[test]
    fn human_duration_shows_two_largest_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(12), "12s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(90_061), "1d 1h");
        assert_eq!(human_duration(3661), "1h 1m");
    }
}
