//! `tollctl sessions list`, `tollctl replay` and `tollctl recordings verify`: the recorded
//! archive, read back for people (one line per session; one session as it happened; whether
//! anyone changed it).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tollgate::record::{self, Body, Event, Recorded, StatementResult};

/// `tollctl sessions ...`
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// One line per recorded session: id, principal, connection, start, duration, statements,
    /// denied statements.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The archive (`[record] dir`).
    pub dir: PathBuf,
    /// Only sessions that started at or after this time: RFC 3339 (2026-11-27T08:00:00Z), a
    /// date (2026-11-27, UTC) or an age (90s, 15m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only sessions of this principal (the token's subject).
    #[arg(long)]
    pub principal: Option<String>,
    /// Only sessions on this connection.
    #[arg(long)]
    pub connection: Option<String>,
}

/// `tollctl replay DIR SESSION_ID`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The archive (`[record] dir`).
    pub dir: PathBuf,
    /// The session id (as `sessions list` prints it; a unique prefix is enough).
    pub session: String,
    /// Replay in real time, or this many times faster (2 = twice as fast); without it the
    /// session is printed at once.
    #[arg(long)]
    pub speed: Option<f64>,
}

/// `tollctl recordings ...`
#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// Check every session's hash chain; names each session whose events were changed,
    /// removed or reordered, and exits non-zero if any was.
    Verify {
        /// The archive (`[record] dir`).
        dir: PathBuf,
    },
}

pub fn run_sessions(command: SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List(args) => list(&args),
    }
}

pub fn run_recordings(command: RecordingsCommand) -> anyhow::Result<()> {
    match command {
        RecordingsCommand::Verify { dir } => {
            ensure_dir(&dir)?;
            let report = record::verify(&dir);
            print!("{report}");
            if !report.to_string().ends_with('\n') {
                println!();
            }
            if !report.is_clean() {
                bail!("the archive in {} does not verify", dir.display());
            }
            Ok(())
        }
    }
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(())
}

fn read(dir: &Path) -> anyhow::Result<Vec<Recorded>> {
    ensure_dir(dir)?;
    record::read(dir).with_context(|| format!("reading the archive in {}", dir.display()))
}

/// What `sessions list` shows of one session.
struct Summary {
    id: String,
    principal: String,
    connection: String,
    start_us: i64,
    end_us: i64,
    ended: bool,
    statements: u64,
    denied: u64,
}

fn summaries(events: &[Recorded]) -> Vec<Summary> {
    let mut by: BTreeMap<&str, Summary> = BTreeMap::new();
    for r in events {
        let e = &r.event;
        let s = by.entry(e.session.id.as_str()).or_insert_with(|| Summary {
            id: e.session.id.clone(),
            principal: e.session.principal.clone(),
            connection: e.session.connection.clone(),
            start_us: e.at_us,
            end_us: e.at_us,
            ended: false,
            statements: 0,
            denied: 0,
        });
        s.start_us = s.start_us.min(e.at_us);
        s.end_us = s.end_us.max(e.at_us);
        match &e.body {
            Body::Statement(st) => {
                s.statements += 1;
                if st.decision.as_ref().is_some_and(|d| d.action != "allow") {
                    s.denied += 1;
                }
            }
            Body::Disconnect(_) => s.ended = true,
            _ => {}
        }
    }
    let mut list: Vec<Summary> = by.into_values().collect();
    list.sort_by(|a, b| a.start_us.cmp(&b.start_us).then(a.id.cmp(&b.id)));
    list
}

fn list(args: &ListArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let events = read(&args.dir)?;
    let rows: Vec<Summary> = summaries(&events)
        .into_iter()
        .filter(|s| since.is_none_or(|t| s.start_us >= t))
        .filter(|s| args.principal.as_ref().is_none_or(|p| &s.principal == p))
        .filter(|s| args.connection.as_ref().is_none_or(|c| &s.connection == c))
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<32}  {:<24}  {:<16}  {:<20}  {:>10}  {:>10}  {:>6}",
        "SESSION", "PRINCIPAL", "CONNECTION", "START (UTC)", "DURATION", "STATEMENTS", "DENIED"
    )?;
    for s in &rows {
        let duration = if s.ended {
            format_duration(s.end_us - s.start_us)
        } else {
            "open".to_owned()
        };
        writeln!(
            out,
            "{:<32}  {:<24}  {:<16}  {:<20}  {:>10}  {:>10}  {:>6}",
            s.id,
            s.principal,
            s.connection,
            format_utc(s.start_us),
            duration,
            s.statements,
            s.denied
        )?;
    }
    writeln!(
        out,
        "({} session{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}

/// `--since`: RFC 3339, a UTC date, or an age before now. Microseconds since the epoch.
fn parse_since(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().with_context(|| {
        format!("--since {text:?}: expected RFC 3339, YYYY-MM-DD or an age like 15m")
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--since {text:?}: the age's unit must be s, m, h or d"),
    };
    Ok(chrono::Utc::now().timestamp_micros() - n.saturating_mul(seconds).saturating_mul(1_000_000))
}

fn format_utc(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| us.to_string())
}

fn format_duration(us: i64) -> String {
    let ms = us / 1000;
    match ms {
        ..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    if let Some(speed) = args.speed {
        if !(speed.is_finite() && speed > 0.0) {
            bail!("--speed must be a positive number");
        }
    }
    let events = read(&args.dir)?;
    let mut ids: Vec<&str> = events
        .iter()
        .map(|r| r.event.session.id.as_str())
        .filter(|id| id.starts_with(args.session.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let id = match ids.as_slice() {
        [one] => (*one).to_owned(),
        [] => bail!("no session {:?} in {}", args.session, args.dir.display()),
        many => bail!(
            "{:?} matches {} sessions; give more of the id",
            args.session,
            many.len()
        ),
    };
    let mut session: Vec<&Event> = events
        .iter()
        .map(|r| &r.event)
        .filter(|e| e.session.id == id)
        .collect();
    session.sort_by_key(|e| e.seq);
    let Some(first) = session.first() else {
        bail!("session {id} has no events");
    };
    let start = first.at_us;
    let mut out = std::io::stdout().lock();
    let mut shown_us = start;
    let mut texts: BTreeMap<u64, String> = BTreeMap::new();
    for e in &session {
        if let Some(speed) = args.speed {
            let wait_us = ((e.at_us - shown_us).max(0) as f64 / speed) as u64;
            out.flush()?;
            std::thread::sleep(Duration::from_micros(wait_us));
            shown_us = e.at_us;
        }
        let at = format!("+{:.3}s", (e.at_us - start) as f64 / 1e6);
        render(&mut out, &at, e, &mut texts)?;
    }
    Ok(())
}

/// Writes one event as a person reads a session: psql's way for results.
fn render(
    out: &mut impl Write,
    at: &str,
    e: &Event,
    texts: &mut BTreeMap<u64, String>,
) -> std::io::Result<()> {
    let meta = &e.session;
    match &e.body {
        Body::Connect(c) => {
            writeln!(
                out,
                "{at} connect {} [{}] to {} ({}) from {}, application {:?}, {}",
                meta.principal,
                meta.groups.join(", "),
                meta.connection,
                meta.protocol,
                c.client_addr,
                c.application_name,
                if c.tls { "TLS" } else { "no TLS" }
            )?;
            writeln!(out, "        session {}", meta.id)?;
        }
        Body::Statement(s) => {
            texts.insert(s.statement_id, s.text.to_string());
            writeln!(out, "{at} [{}] {}", s.statement_id, s.text.trim_end())?;
            if !s.params.is_empty() {
                let params: Vec<String> = s
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| match p {
                        Some(v) => format!("${}={v:?}", i + 1),
                        None => format!("${}=NULL", i + 1),
                    })
                    .collect();
                writeln!(out, "        parameters: {}", params.join(" "))?;
            }
            match &s.decision {
                Some(d) => writeln!(
                    out,
                    "        decision: {} ({}){}",
                    d.action,
                    d.rules.join(", "),
                    if d.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", d.reason)
                    }
                )?,
                None => writeln!(out, "        decision: none (policy stage off)")?,
            }
        }
        Body::Result(r) => render_result(out, r)?,
        Body::Approval(a) => writeln!(
            out,
            "{at} approval of [{}] (request {}): {}{}",
            a.statement_id,
            a.request_id,
            a.outcome,
            a.approver
                .as_ref()
                .map(|who| format!(" by {who}"))
                .unwrap_or_default()
        )?,
        Body::Disconnect(d) => writeln!(
            out,
            "{at} disconnect: {} ({} statement{}, {} denied, {} bytes in, {} bytes out, {})",
            d.reason,
            d.statements,
            if d.statements == 1 { "" } else { "s" },
            d.denied,
            d.bytes_from_client,
            d.bytes_to_client,
            format_duration(i64::try_from(d.duration_us).unwrap_or(i64::MAX))
        )?,
    }
    Ok(())
}

/// A result the way psql shows it: aligned columns, a row count, the error if any.
fn render_result(out: &mut impl Write, r: &StatementResult) -> std::io::Result<()> {
    if let (Some(code), Some(message)) = (&r.sqlstate, &r.error) {
        writeln!(out, "ERROR:  {code}: {message}")?;
    } else if let Some(message) = &r.error {
        writeln!(out, "ERROR:  {message}")?;
    }
    if !r.columns.is_empty() {
        let (rows, malformed) = record::result_rows(r);
        let right: Vec<bool> = r.columns.iter().map(|c| is_numeric(c.type_id)).collect();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| row.iter().map(|v| v.clone().unwrap_or_default()).collect())
            .collect();
        let mut widths: Vec<usize> = r.columns.iter().map(|c| c.name.chars().count()).collect();
        for row in &cells {
            for (i, v) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(v.chars().count());
                }
            }
        }
        let header: Vec<String> = r
            .columns
            .iter()
            .zip(&widths)
            .map(|(c, &w)| centre(&c.name, w))
            .collect();
        writeln!(out, " {} ", header.join(" | "))?;
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w + 2)).collect();
        writeln!(out, "{}", rule.join("+"))?;
        for row in &cells {
            let line: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let v = row.get(i).map_or("", String::as_str);
                    if right.get(i).copied().unwrap_or(false) {
                        format!("{v:>w$}")
                    } else {
                        format!("{v:<w$}")
                    }
                })
                .collect();
            writeln!(out, " {} ", line.join(" | ").trim_end())?;
        }
        if let Some(why) = malformed {
            writeln!(out, "... rows cut short in the recording: {why}")?;
        }
        if r.truncated {
            writeln!(
                out,
                "... {} more rows not recorded (over the recording cap)",
                r.rows.saturating_sub(r.kept_rows)
            )?;
        }
        writeln!(
            out,
            "({} row{})",
            r.rows,
            if r.rows == 1 { "" } else { "s" }
        )?;
    }
    // A statement refused or failed before the server answered it has no command tag.
    let tag = r.command_tag.as_deref().unwrap_or("(no command tag)");
    writeln!(
        out,
        "        {tag} · {} bytes · {:.3} ms",
        r.bytes,
        r.duration_us as f64 / 1000.0
    )?;
    Ok(())
}

fn centre(text: &str, width: usize) -> String {
    let len = text.chars().count();
    let left = (width.saturating_sub(len)) / 2;
    let right = width.saturating_sub(len + left);
    format!("{}{text}{}", " ".repeat(left), " ".repeat(right))
}

/// PostgreSQL's numeric types, which psql aligns right.
fn is_numeric(type_oid: u32) -> bool {
    matches!(type_oid, 20 | 21 | 23 | 26 | 700 | 701 | 790 | 1700)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_dates_and_ages() {
        assert_eq!(
            parse_since("2026-11-27T08:00:00Z").unwrap(),
            1_795_766_400_000_000
        );
        assert_eq!(parse_since("2026-11-27").unwrap(), 1_795_737_600_000_000);
        let now = chrono::Utc::now().timestamp_micros();
        let ago = parse_since("15m").unwrap();
        assert!((now - ago - 900_000_000).abs() < 5_000_000);
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("5w").is_err());
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(format_duration(12_000), "12ms");
        assert_eq!(format_duration(1_500_000), "1.5s");
        assert_eq!(format_duration(125_000_000), "2m05s");
    }
}
