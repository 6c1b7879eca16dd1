//! Hermetic mode: the load test starts every target itself (a throwaway PostgreSQL, haproxy,
//! pgbouncer, Tollgate twice), installs what is missing, and stops all of it afterwards,
//! whatever happens.
//!
//! Cleanup has three layers, because a benchmark that leaves a PostgreSQL with 2,000
//! backends behind is worse than one that fails:
//! 1. `Drop` guards: [`Hermetic`] stops the services and the cluster when it goes out of
//!    scope, on success, on error and on panic (unwinding).
//! 2. A signal thread ([`install_signal_handler`]): the first Ctrl-C / SIGTERM kills the
//!    foreground child (pgbench, cargo) so that the main thread returns an error and the
//!    guards run; a second one hands over to the reaper and exits at once.
//! 3. A reaper: a `sh` in its own process group that holds the read end of a pipe. It learns
//!    the process group of every service as it starts; when the pipe closes (this process
//!    died, even by SIGKILL) it kills those groups, stops PostgreSQL and removes the work
//!    directory. On a clean exit it is killed before it has anything to do.
//!
//! Every child runs in its own process group, so a terminal's Ctrl-C reaches this process
//! only, and whole groups (a service and anything it forked) are killed together.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rand::distr::{Alphanumeric, SampleString as _};

use crate::scenario::{merge_toml, substitute, PoolMode, ScenarioFile};
use crate::targets::{Endpoint, TargetKind};

// ---------------------------------------------------------------------------------------------
// Interruption and child processes
// ---------------------------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Process groups of foreground children (pgbench, cargo, apt-get): killed on Ctrl-C.
static FOREGROUND: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// The write end of the reaper's pipe; dropping it makes the reaper clean up.
static REAPER_PIPE: Mutex<Option<ChildStdin>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the thread that turns SIGINT, SIGTERM and SIGHUP into an orderly stop.
pub fn install_signal_handler() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if !INTERRUPTED.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "\ntollgate-loadtest: signal {signal}: stopping the run and every service it started (again to force)"
                    );
                    for pgid in lock(&FOREGROUND).iter() {
                        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGTERM);
                    }
                } else {
                    eprintln!("tollgate-loadtest: forced stop; the reaper stops the services");
                    drop(lock(&REAPER_PIPE).take());
                    std::process::exit(130);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// True once a stop signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with "interrupted" once a stop signal arrived.
pub fn check_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted by a signal");
    }
    Ok(())
}

/// Sleeps, waking early (with an error) when a stop signal arrives.
pub fn sleep(d: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Removes the libpq variables a user's shell may set, so that only what the load test
/// sets reaches pgbench and psql.
pub fn clear_libpq_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(&key);
        }
    }
}

/// A foreground child (pgbench, cargo, apt-get) in its own process group. Ctrl-C kills it;
/// dropping it kills it if it still runs.
pub struct Foreground {
    child: Child,
    pgid: i32,
}

impl Foreground {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Foreground> {
        check_interrupted()?;
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
        let pgid = child.id() as i32;
        lock(&FOREGROUND).push(pgid);
        Ok(Foreground { child, pgid })
    }

    /// Waits until the child exits or `deadline` passes (then `None`). Kills it and fails
    /// when a stop signal arrives.
    pub fn wait_until(&mut self, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if interrupted() {
                self.kill();
                bail!("interrupted by a signal");
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
        }
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        loop {
            if let Some(s) = self.wait_until(Instant::now() + Duration::from_secs(3600))? {
                return Ok(s);
            }
        }
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        self.kill();
        lock(&FOREGROUND).retain(|p| *p != self.pgid);
    }
}

/// Runs a command in the foreground to completion, output inherited.
fn run_visible(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = crate::pgbench::display_command(cmd);
    eprintln!("$ {shown}");
    let status = Foreground::spawn(cmd)?.wait()?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command to completion with captured output; fails with its stderr.
fn run_captured(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    check_interrupted()?;
    cmd.stdin(Stdio::null()).process_group(0);
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A long-running service (haproxy, pgbouncer, tollgate) in its own process group, its
/// output in a log file. Dropping it stops it: SIGTERM to the group, SIGKILL after 5 s.
pub struct Service {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Service {
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Service> {
        check_interrupted()?;
        let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {name} ({})",
                cmd.get_program().to_string_lossy()
            )
        })?;
        reaper_watch(child.id() as i32);
        Ok(Service {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `addr` accepts TCP; fails with the log when the service exits first or
    /// `timeout` passes.
    fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on {addr}; its log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} is not listening on {addr} after {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        crate::pgbench::tail(&text, lines)
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pgid = Pid::from_raw(self.child.id() as i32);
            let _ = killpg(pgid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the reaper (see the module comment). `pg_stop` is the command that stops the
/// cluster; `dir` is removed afterwards unless `keep`.
fn start_reaper(pg_stop: &[OsString], dir: &Path, keep: bool) -> anyhow::Result<Child> {
    // POSIX sh (dash): its `kill` takes "-PGID" for a group and has no "--".
    let script = r#"pgids=""
while read -r p; do pgids="$pgids $p"; done
for p in $pgids; do kill -TERM "-$p" 2>/dev/null; done
sleep 1
for p in $pgids; do kill -KILL "-$p" 2>/dev/null; done
"$@" >/dev/null 2>&1
[ -n "$LOADTEST_KEEP" ] || rm -rf -- "$LOADTEST_DIR""#;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, "tollgate-loadtest-reaper"])
        .args(pg_stop)
        .env("LOADTEST_DIR", dir)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if keep {
        cmd.env("LOADTEST_KEEP", "1");
    } else {
        cmd.env_remove("LOADTEST_KEEP");
    }
    let mut child = cmd.spawn().context("starting the reaper (sh)")?;
    *lock(&REAPER_PIPE) = child.stdin.take();
    Ok(child)
}

/// Tells the reaper about a process group to kill should this process die.
fn reaper_watch(pgid: i32) {
    if let Some(pipe) = lock(&REAPER_PIPE).as_mut() {
        let _ = writeln!(pipe, "{pgid}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tools: finding and installing them, building Tollgate
// ---------------------------------------------------------------------------------------------

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// PostgreSQL's bin directory: `$TOLLGATE_PG_BINDIR`, `pg_config --bindir`, the highest
/// `/usr/lib/postgresql/*/bin`, else PATH (the order of deploy/lib.sh and the test harness).
fn pg_bindir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TOLLGATE_PG_BINDIR").map(PathBuf::from) {
        if d.join("initdb").is_file() {
            return Some(d);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && d.join("initdb").is_file() {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The external programs a run uses.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pg_bindir: PathBuf,
    pub pgbench: PathBuf,
    pub haproxy: Option<PathBuf>,
    pub pgbouncer: Option<PathBuf>,
}

impl Tools {
    fn pg(&self, name: &str) -> PathBuf {
        let p = self.pg_bindir.join(name);
        if p.is_file() {
            p
        } else {
            PathBuf::from(name)
        }
    }
}

/// Finds PostgreSQL, pgbench and (when needed) haproxy and pgbouncer; installs what is
/// missing with apt-get when allowed (root on Debian/Ubuntu).
pub fn find_tools(
    need_haproxy: bool,
    need_pgbouncer: bool,
    allow_install: bool,
) -> anyhow::Result<Tools> {
    let mut missing: Vec<(&str, &str)> = Vec::new();
    let look = |missing: &mut Vec<(&str, &str)>| {
        let bindir = pg_bindir();
        if bindir.is_none() {
            missing.push(("initdb/pg_ctl", "postgresql"));
        }
        let pgbench = bindir
            .as_ref()
            .map(|d| d.join("pgbench"))
            .filter(|p| p.is_file())
            .or_else(|| on_path("pgbench"));
        if pgbench.is_none() {
            missing.push(("pgbench", "postgresql-contrib"));
        }
        if on_path("psql").is_none() && !bindir.as_ref().is_some_and(|d| d.join("psql").is_file()) {
            missing.push(("psql", "postgresql-client"));
        }
        let haproxy = on_path("haproxy");
        if need_haproxy && haproxy.is_none() {
            missing.push(("haproxy", "haproxy"));
        }
        let pgbouncer = on_path("pgbouncer");
        if need_pgbouncer && pgbouncer.is_none() {
            missing.push(("pgbouncer", "pgbouncer"));
        }
        if running_as_root() && on_path("runuser").is_none() {
            missing.push(("runuser", "util-linux"));
        }
        (bindir, pgbench, haproxy, pgbouncer)
    };
    let mut found = look(&mut missing);
    if !missing.is_empty() {
        let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        packages.dedup();
        let what: Vec<&str> = missing.iter().map(|(w, _)| *w).collect();
        let install = format!(
            "apt-get install -y --no-install-recommends {}",
            packages.join(" ")
        );
        if !allow_install || !running_as_root() || on_path("apt-get").is_none() {
            bail!(
                "missing: {} — install them (e.g. `sudo {install}`) or run as root with --allow-install",
                what.join(", ")
            );
        }
        eprintln!(
            "missing: {} -> installing {}",
            what.join(", "),
            packages.join(" ")
        );
        run_visible(
            Command::new("apt-get")
                .args(["update", "-qq"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        run_visible(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        missing.clear();
        found = look(&mut missing);
        if !missing.is_empty() {
            let what: Vec<&str> = missing.iter().map(|(w, _)| *w).collect();
            bail!("still missing after apt-get install: {}", what.join(", "));
        }
    }
    let (bindir, pgbench, haproxy, pgbouncer) = found;
    Ok(Tools {
        pg_bindir: bindir.context("no PostgreSQL bin directory")?,
        pgbench: pgbench.context("no pgbench")?,
        haproxy,
        pgbouncer,
    })
}

/// Newest modification time of the files a release build of tollgate/tollctl reads.
fn newest_source(repo: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "tests" | "fuzz" | ".git") {
                    walk(&path, newest);
                }
            } else if name.ends_with(".rs") || name.ends_with(".toml") {
                if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                    *newest = Some(newest.map_or(m, |n| n.max(m)));
                }
            }
        }
    }
    let mut newest = None;
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = fs::metadata(repo.join(f)).and_then(|m| m.modified()) {
            newest = Some(newest.map_or(m, |n: SystemTime| n.max(m)));
        }
    }
    walk(&repo.join("dataplane"), &mut newest);
    walk(&repo.join("admin"), &mut newest);
    newest
}

/// The cargo target directory: `$CARGO_TARGET_DIR` or `<repo>/target`.
pub fn target_dir(repo: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => repo.join(d),
        None => repo.join("target"),
    }
}

/// Release `tollgate` and `tollctl`: the given ones, else `<target>/release/`, built with
/// `cargo build --release -p tollgate -p tollctl` when missing or older than the sources.
pub fn tollgate_binaries(
    repo: &Path,
    tollgate: Option<&Path>,
    tollctl: Option<&Path>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(gw) = tollgate {
        let ctl = match tollctl {
            Some(c) => c.to_owned(),
            None => gw.with_file_name("tollctl"),
        };
        for b in [gw, ctl.as_path()] {
            if !b.is_file() {
                bail!(
                    "{} does not exist (--tollgate-bin / --tollctl-bin)",
                    b.display()
                );
            }
        }
        return Ok((gw.to_owned(), ctl));
    }
    let release = target_dir(repo).join("release");
    let (gw, ctl) = (release.join("tollgate"), release.join("tollctl"));
    let built_at = [&gw, &ctl]
        .iter()
        .map(|b| fs::metadata(b).and_then(|m| m.modified()).ok())
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().min());
    let stale = match (built_at, newest_source(repo)) {
        (None, _) => true,
        (Some(b), Some(src)) => src > b,
        (Some(_), None) => false,
    };
    if stale {
        if !repo.join("dataplane").is_dir() {
            bail!(
                "no tollgate release binary in {} and no source tree at {} to build one: pass --tollgate-bin",
                release.display(),
                repo.display()
            );
        }
        eprintln!(
            "building release tollgate and tollctl (missing or older than the sources; the first build takes minutes)"
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_visible(
            Command::new(cargo)
                .args(["build", "--release", "-p", "tollgate", "-p", "tollctl"])
                .current_dir(repo),
        )?;
        // Cargo leaves a fresh binary untouched; mark it checked so the next run skips cargo.
        for b in [&gw, &ctl] {
            if let Ok(f) = fs::File::options().append(true).open(b) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }
    for b in [&gw, &ctl] {
        if !b.is_file() {
            bail!("{} is missing after the build", b.display());
        }
    }
    Ok((gw, ctl))
}

// ---------------------------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------------------------

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()?.port())
}

fn random_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The unprivileged account servers run as when we are root.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

fn server_user(allow_install: bool) -> anyhow::Result<Option<ServerUser>> {
    if !running_as_root() {
        return Ok(None);
    }
    let find = || nix::unistd::User::from_name("postgres").ok().flatten();
    let user = match find() {
        Some(u) => u,
        None if allow_install => {
            run_visible(Command::new("useradd").args([
                "--system",
                "--user-group",
                "--home-dir",
                "/var/lib/postgresql",
                "--shell",
                "/bin/bash",
                "postgres",
            ]))?;
            find().context("no `postgres` user after useradd")?
        }
        None => bail!("running as root needs a `postgres` user to run PostgreSQL and pgbouncer as"),
    };
    Ok(Some(ServerUser {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// The throwaway PostgreSQL cluster.
pub struct PgServer {
    pub port: u16,
    /// Cluster directory: `data/`, the unix socket, `postgres.log`.
    pub dir: PathBuf,
    /// SCRAM-SHA-256 password of `orders_app`.
    pub password: String,
    tools: Tools,
    user: Option<ServerUser>,
    stopped: bool,
}

/// The upstream role every target logs in as.
pub const ROLE: &str = "orders_app";
/// The database pgbench's tables live in.
pub const DATABASE: &str = "orders";
/// The token subject (and so the user name) of Tollgate clients.
pub const TOKEN_SUBJECT: &str = "loadtest";
/// The Tollgate `[[connection]]` clients name in `dbname`; the shipped policy data
/// (policies/data.json) limits a connection of this name to the `public.pgbench_*` tables.
pub const TOLLGATE_CONNECTION: &str = "pgbench";

impl PgServer {
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.tools.pg(name));
        if let Some(u) = self.user {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd.current_dir(&self.dir);
        clear_libpq_env(&mut cmd);
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The command that stops this cluster at once (for the reaper).
    fn stop_command(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if self.user.is_some() {
            v.extend(["runuser", "-u", "postgres", "--"].map(OsString::from));
        }
        v.push(self.tools.pg("pg_ctl").into());
        v.extend([
            "-D".into(),
            self.data().into(),
            "-m".into(),
            "immediate".into(),
            "stop".into(),
        ]);
        v
    }

    fn init(&self, max_connections: u32, extra: &[String]) -> anyhow::Result<()> {
        run_captured(
            self.command("initdb")
                .arg("-D")
                .arg(self.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .args(["-E", "UTF8", "--locale=C", "--no-sync"]),
            "initdb",
        )?;
        let mut conf = format!(
            "\n# tollgate-loadtest\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             max_connections = {max_connections}\n\
             shared_buffers = '256MB'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n",
            self.port,
            self.dir.display()
        );
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        let path = self.data().join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(conf.as_bytes())?;
        Ok(())
    }

    /// Starts the server; if the port picked was taken in the meantime, tries another.
    fn start(&mut self) -> anyhow::Result<()> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let result = run_captured(
                self.command("pg_ctl")
                    .arg("-D")
                    .arg(self.data())
                    .arg("-l")
                    .arg(self.log())
                    .args(["-w", "-t", "120", "start"]),
                "pg_ctl start",
            );
            let Err(e) = result else { return Ok(()) };
            let log = self.log_tail(20);
            let port_taken = log.contains("could not bind") || log.contains("already in use");
            if !port_taken || attempt == ATTEMPTS {
                return Err(e.context(format!("server log:\n{log}")));
            }
            // The last `port` line of postgresql.conf wins.
            self.port = free_port()?;
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(self.data().join("postgresql.conf"))?;
            writeln!(f, "port = {}", self.port)?;
        }
        unreachable!("the last attempt returns")
    }

    pub fn log_tail(&self, n: usize) -> String {
        crate::pgbench::tail(
            &String::from_utf8_lossy(&fs::read(self.log()).unwrap_or_default()),
            n,
        )
    }

    /// Runs SQL as the superuser over the unix socket; returns psql's `-At` output.
    pub fn psql_super(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let mut cmd = Command::new(self.tools.pg("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]);
        clear_libpq_env(&mut cmd);
        let out = run_captured(&mut cmd, "psql")?;
        Ok(out.trim_end().to_owned())
    }

    fn create_role_and_database(&self) -> anyhow::Result<()> {
        self.psql_super(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256'; CREATE ROLE {ROLE} LOGIN PASSWORD '{}'",
                self.password
            ),
        )?;
        self.psql_super(
            "postgres",
            &format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"),
        )?;
        Ok(())
    }

    /// `pgbench -i -s scale` as orders_app over TCP, so the tables belong to it.
    fn pgbench_init(&self, scale: u32) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.tools.pgbench);
        cmd.args(["-i", "-q", "-s", &scale.to_string(), "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", ROLE, DATABASE]);
        clear_libpq_env(&mut cmd);
        cmd.env("PGPASSWORD", &self.password);
        run_captured(&mut cmd, "pgbench -i")?;
        Ok(())
    }

    /// The SCRAM verifier of a role, as pgbouncer's auth_file wants it.
    fn scram_secret(&self, role: &str) -> anyhow::Result<String> {
        let s = self.psql_super(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
        )?;
        if !s.starts_with("SCRAM-SHA-256$") {
            bail!("role {role} has no SCRAM secret");
        }
        Ok(s)
    }

    /// `CHECKPOINT`, so that one run's dirty pages are not written during the next.
    pub fn checkpoint(&self) -> anyhow::Result<()> {
        self.psql_super("postgres", "CHECKPOINT").map(|_| ())
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "60", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub repo: PathBuf,
    pub tollgate_bin: Option<PathBuf>,
    pub tollctl_bin: Option<PathBuf>,
    pub allow_install: bool,
    /// Keep the work directory (configs, logs, the cluster's data) afterwards.
    pub keep: bool,
}

/// Everything a hermetic run started. Dropping it stops all of it.
pub struct Hermetic {
    // Field order is drop order: the proxies go before the cluster they front.
    tollgate_on: Option<Service>,
    tollgate_off: Option<Service>,
    pgbouncer: Option<Service>,
    haproxy: Option<Service>,
    ports: BTreeMap<TargetKind, u16>,
    pub pg: PgServer,
    token: String,
    pub tools: Tools,
    /// Versions of PostgreSQL, pgbench, haproxy, pgbouncer and tollgate.
    pub versions: BTreeMap<String, String>,
    /// The Tollgate configurations as written (for the report).
    pub tollgate_configs: BTreeMap<TargetKind, String>,
    /// Work directory: configs, logs, pgbench's per-transaction logs.
    pub work: PathBuf,
    keep: bool,
    reaper: Option<Child>,
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

fn version_of(program: &Path, arg: &str) -> String {
    match Command::new(program).arg(arg).output() {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            first_line(&text)
        }
        Err(e) => format!("unknown ({e})"),
    }
}

impl Hermetic {
    /// Installs and builds what is missing, then starts PostgreSQL and the targets `file`
    /// uses. Every started piece is stopped again if a later one fails.
    pub fn start(file: &ScenarioFile, opts: &Options) -> anyhow::Result<Hermetic> {
        let wants = |t| file.targets.contains(&t);
        let tools = find_tools(
            wants(TargetKind::NullRelay),
            wants(TargetKind::Pgbouncer),
            opts.allow_install,
        )?;
        let tollgate = if wants(TargetKind::TollgateOff) || wants(TargetKind::TollgateOn) {
            Some(tollgate_binaries(
                &opts.repo,
                opts.tollgate_bin.as_deref(),
                opts.tollctl_bin.as_deref(),
            )?)
        } else {
            None
        };
        let user = server_user(opts.allow_install)?;

        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let work = tempfile::Builder::new()
            .prefix("tollgate-loadtest-")
            .tempdir_in(&base)
            .context("creating the work directory")?
            .keep();
        fs::set_permissions(&work, fs::Permissions::from_mode(0o755))?;
        let pg_dir = work.join("pg");
        fs::create_dir(&pg_dir)?;
        fs::set_permissions(&pg_dir, fs::Permissions::from_mode(0o700))?;
        if let Some(u) = user {
            std::os::unix::fs::chown(&pg_dir, Some(u.uid), Some(u.gid))
                .context("chown of the cluster directory to postgres")?;
        }
        let mut versions = BTreeMap::new();
        versions.insert(
            "postgres".into(),
            version_of(&tools.pg("postgres"), "--version"),
        );
        versions.insert("pgbench".into(), version_of(&tools.pgbench, "--version"));

        let pg = PgServer {
            port: free_port()?,
            dir: pg_dir,
            password: random_secret(),
            tools: tools.clone(),
            user,
            stopped: false,
        };
        let reaper = start_reaper(&pg.stop_command(), &work, opts.keep)?;
        // From here on, `env` owns everything: an early return drops it and cleans up.
        let mut env = Hermetic {
            tollgate_on: None,
            tollgate_off: None,
            pgbouncer: None,
            haproxy: None,
            ports: BTreeMap::new(),
            pg,
            token: String::new(),
            tools,
            versions,
            tollgate_configs: BTreeMap::new(),
            work,
            keep: opts.keep,
            reaper: Some(reaper),
        };

        // Each proxy holds one upstream connection per client for the idle scenarios (but
        // pgbouncer in transaction mode), so the server must allow them all.
        let max_connections = (file.max_idle_connections() + 100).max(300);
        let pg_extra: Vec<String> = file.postgres.conf.clone();
        env.pg.init(max_connections, &pg_extra)?;
        env.pg.start()?;
        env.ports.insert(TargetKind::Direct, env.pg.port);
        env.pg.create_role_and_database()?;
        env.pg.pgbench_init(file.scale)?;

        if wants(TargetKind::NullRelay) {
            env.start_haproxy(file)?;
        }
        if wants(TargetKind::Pgbouncer) {
            env.start_pgbouncer(file, user)?;
        }
        if let Some((gw, ctl)) = tollgate {
            // The binary may be older than the checkout (--tollgate-bin): say which it is.
            let built = fs::metadata(&gw)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| crate::report::utc_timestamp(d.as_secs()))
                .unwrap_or_else(|| "unknown".into());
            env.versions.insert(
                "tollgate".into(),
                format!(
                    "{} ({}, built {built})",
                    version_of(&gw, "--version"),
                    gw.display()
                ),
            );
            env.token = issue_token(
                &ctl,
                &env.work.join("tollgate/keys"),
                &file.tollgate.token_groups,
            )?;
            for kind in [TargetKind::TollgateOff, TargetKind::TollgateOn] {
                if wants(kind) {
                    env.start_tollgate(&gw, kind, file, &opts.repo)?;
                }
            }
        }
        Ok(env)
    }

    fn start_haproxy(&mut self, file: &ScenarioFile) -> anyhow::Result<()> {
        let bin = self.tools.haproxy.clone().context("haproxy not found")?;
        self.versions
            .insert("haproxy".into(), version_of(&bin, "-v"));
        let dir = self.work.join("haproxy");
        fs::create_dir_all(&dir)?;
        let maxconn = (file.max_idle_connections() + 1000).max(4000);
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let cfg = format!(
                "# tollgate-loadtest: the null relay (bytes in, bytes out)\n\
                 global\n    nbthread 1\n    maxconn {maxconn}\n\n\
                 defaults\n    mode tcp\n    timeout connect 10s\n    timeout client 1h\n    timeout server 1h\n\n\
                 frontend pg\n    bind 127.0.0.1:{port}\n    maxconn {maxconn}\n    default_backend pg\n\n\
                 backend pg\n    server pg 127.0.0.1:{}\n",
                self.pg.port
            );
            let path = dir.join("haproxy.cfg");
            fs::write(&path, cfg)?;
            let mut svc = Service::spawn(
                "haproxy",
                Command::new(&bin).arg("-db").arg("-f").arg(&path),
                &dir.join("haproxy.log"),
            )?;
            match svc.wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30)) {
                Ok(()) => {
                    self.ports.insert(TargetKind::NullRelay, port);
                    self.haproxy = Some(svc);
                    return Ok(());
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("haproxy did not start")))
    }

    fn start_pgbouncer(
        &mut self,
        file: &ScenarioFile,
        user: Option<ServerUser>,
    ) -> anyhow::Result<()> {
        let bin = self
            .tools
            .pgbouncer
            .clone()
            .context("pgbouncer not found")?;
        self.versions
            .insert("pgbouncer".into(), version_of(&bin, "--version"));
        let dir = self.work.join("pgbouncer");
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let secret = self.pg.scram_secret(ROLE)?;
        let auth_file = dir.join("userlist.txt");
        write_private(&auth_file, &format!("\"{ROLE}\" \"{secret}\"\n"))?;
        let max_clients = (file.max_idle_connections() + 500).max(1000);
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            // One database name per pool mode, so one process serves both.
            let ini = format!(
                "; tollgate-loadtest\n\
                 [databases]\n\
                 {DATABASE} = host=127.0.0.1 port={pg} dbname={DATABASE} pool_mode=session\n\
                 {DATABASE}_tx = host=127.0.0.1 port={pg} dbname={DATABASE} pool_mode=transaction\n\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {auth}\n\
                 pool_mode = session\n\
                 max_client_conn = {max_clients}\n\
                 default_pool_size = 100\n\
                 max_db_connections = 0\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n\
                 log_pooler_errors = 1\n",
                pg = self.pg.port,
                auth = auth_file.display(),
            );
            let path = dir.join("pgbouncer.ini");
            write_private(&path, &ini)?;
            if let Some(u) = user {
                for p in [&dir, &auth_file, &path] {
                    std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))?;
                }
            }
            let mut cmd = Command::new(&bin);
            cmd.arg(&path).current_dir(&dir);
            if let Some(u) = user {
                // pgbouncer refuses to run as root.
                cmd.uid(u.uid).gid(u.gid);
            }
            let mut svc = Service::spawn("pgbouncer", &mut cmd, &self.work.join("pgbouncer.log"))?;
            match svc.wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30)) {
                Ok(()) => {
                    self.ports.insert(TargetKind::Pgbouncer, port);
                    self.pgbouncer = Some(svc);
                    return Ok(());
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("pgbouncer did not start")))
    }

    /// The generated configuration of a Tollgate target.
    fn tollgate_config(
        &self,
        kind: TargetKind,
        port: u16,
        file: &ScenarioFile,
        repo: &Path,
    ) -> anyhow::Result<String> {
        let dir = self.work.join("tollgate");
        let mut gateway = toml::Table::new();
        gateway.insert("listen".into(), format!("127.0.0.1:{port}").into());
        gateway.insert("shards".into(), (file.tollgate.shards as i64).into());
        gateway.insert("allow_plaintext_secrets_on_loopback".into(), true.into());
        gateway.insert("drain_timeout_s".into(), 1.into());
        let mut identity = toml::Table::new();
        identity.insert("issuer".into(), "tollgate-local".into());
        identity.insert("audience".into(), "tollgate".into());
        identity.insert(
            "jwks_file".into(),
            dir.join("keys/jwks.json")
                .to_string_lossy()
                .into_owned()
                .into(),
        );
        let mut connection = toml::Table::new();
        connection.insert("name".into(), TOLLGATE_CONNECTION.into());
        connection.insert("protocol".into(), "postgres".into());
        connection.insert(
            "upstream".into(),
            format!("127.0.0.1:{}", self.pg.port).into(),
        );
        connection.insert("database".into(), DATABASE.into());
        connection.insert("user".into(), ROLE.into());
        connection.insert(
            "password_file".into(),
            dir.join("orders_app.pw")
                .to_string_lossy()
                .into_owned()
                .into(),
        );
        let mut labels = toml::Table::new();
        labels.insert("env".into(), "loadtest".into());
        connection.insert("labels".into(), labels.into());
        let variant = match kind {
            TargetKind::TollgateOn => &file.tollgate_full,
            _ => &file.tollgate_off,
        };
        merge_toml(&mut connection, &variant.connection);
        let mut config = toml::Table::new();
        config.insert("gateway".into(), gateway.into());
        config.insert("identity".into(), identity.into());
        merge_toml(&mut config, &file.tollgate.config);
        merge_toml(&mut config, &variant.config);
        config.insert(
            "connection".into(),
            toml::Value::Array(vec![connection.into()]),
        );
        substitute(&mut config, &self.work, repo);
        // Sections in reading order: [gateway], [identity], the feature sections, then the
        // [[connection]] (a toml::Table on its own would sort them by name).
        let mut out = format!("# tollgate-loadtest: target {} (generated)\n", kind.key());
        let mut keys: Vec<String> = config.keys().cloned().collect();
        let rank = |k: &str| match k {
            "gateway" => 0,
            "identity" => 1,
            "connection" => 3,
            _ => 2,
        };
        keys.sort_by_key(|k| rank(k));
        for key in keys {
            let mut one = toml::Table::new();
            if let Some(v) = config.get(&key) {
                one.insert(key.clone(), v.clone());
            }
            out.push('\n');
            out.push_str(&toml::to_string(&one).context("writing the tollgate config")?);
        }
        Ok(out)
    }

    fn start_tollgate(
        &mut self,
        bin: &Path,
        kind: TargetKind,
        file: &ScenarioFile,
        repo: &Path,
    ) -> anyhow::Result<()> {
        let dir = self.work.join("tollgate");
        fs::create_dir_all(&dir)?;
        let pw = dir.join("orders_app.pw");
        if !pw.exists() {
            write_private(&pw, &self.pg.password)?;
        }
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let config = self.tollgate_config(kind, port, file, repo)?;
            let path = dir.join(format!("{}.toml", kind.key()));
            fs::write(&path, &config)?;
            let mut svc = Service::spawn(
                kind.key(),
                Command::new(bin)
                    .arg("run")
                    .arg("--config")
                    .arg(&path)
                    .env("RUST_LOG", &file.tollgate.rust_log)
                    // Relative paths in the config resolve in the work directory, never
                    // in wherever the load test was started from.
                    .current_dir(&dir),
                &self.work.join(format!("{}.log", kind.key())),
            )?;
            match svc.wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30)) {
                Ok(()) => {
                    self.ports.insert(kind, port);
                    self.tollgate_configs.insert(kind, config);
                    match kind {
                        TargetKind::TollgateOn => self.tollgate_on = Some(svc),
                        _ => self.tollgate_off = Some(svc),
                    }
                    return Ok(());
                }
                Err(e) => {
                    last_err = Some(e.context(format!("config {}:\n{config}", path.display())))
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("{} did not start", kind.key())))
    }

    fn service(&self, kind: TargetKind) -> Option<&Service> {
        match kind {
            TargetKind::Direct => None,
            TargetKind::NullRelay => self.haproxy.as_ref(),
            TargetKind::Pgbouncer => self.pgbouncer.as_ref(),
            TargetKind::TollgateOff => self.tollgate_off.as_ref(),
            TargetKind::TollgateOn => self.tollgate_on.as_ref(),
        }
    }

    /// Fails when a service has died (with its log), so a run is not blamed on a target
    /// that is gone.
    pub fn check_alive(&mut self, kind: TargetKind) -> anyhow::Result<()> {
        let svc = match kind {
            TargetKind::Direct => return Ok(()),
            TargetKind::NullRelay => self.haproxy.as_mut(),
            TargetKind::Pgbouncer => self.pgbouncer.as_mut(),
            TargetKind::TollgateOff => self.tollgate_off.as_mut(),
            TargetKind::TollgateOn => self.tollgate_on.as_mut(),
        };
        let Some(s) = svc else {
            bail!("{} was not started", kind.key());
        };
        if s.running() {
            return Ok(());
        }
        bail!("{} has exited; its log:\n{}", s.name, s.log_tail(30))
    }

    /// How to reach a target (pgbouncer: through the database of the given pool mode).
    pub fn endpoint(&self, kind: TargetKind, pool: PoolMode) -> anyhow::Result<Endpoint> {
        let port = *self
            .ports
            .get(&kind)
            .with_context(|| format!("target {} was not started", kind.key()))?;
        let (user, password) = if kind.is_tollgate() {
            (TOKEN_SUBJECT.to_owned(), self.token.clone())
        } else {
            (ROLE.to_owned(), self.pg.password.clone())
        };
        let dbname = match (kind, pool) {
            (TargetKind::Pgbouncer, PoolMode::Transaction) => format!("{DATABASE}_tx"),
            (k, _) if k.is_tollgate() => TOLLGATE_CONNECTION.to_owned(),
            _ => DATABASE.to_owned(),
        };
        Ok(Endpoint {
            target: kind,
            host: "127.0.0.1".into(),
            port,
            user,
            password,
            dbname,
            proxy_pid: self.service(kind).map(Service::pid),
        })
    }

    /// Where each target listens, and its process id.
    pub fn describe(&self) -> BTreeMap<TargetKind, String> {
        self.ports
            .iter()
            .map(|(k, port)| {
                let pid = self
                    .service(*k)
                    .map(|s| format!(", pid {}", s.pid()))
                    .unwrap_or_default();
                (*k, format!("127.0.0.1:{port}{pid}"))
            })
            .collect()
    }
}

impl Drop for Hermetic {
    fn drop(&mut self) {
        for svc in [
            self.tollgate_on.take(),
            self.tollgate_off.take(),
            self.pgbouncer.take(),
            self.haproxy.take(),
        ]
        .into_iter()
        .flatten()
        {
            drop(svc);
        }
        self.pg.stop();
        if let Some(mut reaper) = self.reaper.take() {
            // Everything is stopped: the reaper has nothing left to do.
            let _ = reaper.kill();
            let _ = reaper.wait();
            drop(lock(&REAPER_PIPE).take());
        }
        if self.keep {
            eprintln!("kept the work directory {}", self.work.display());
        } else {
            let _ = fs::remove_dir_all(&self.work);
        }
    }
}

/// `tollctl token issue --sub loadtest --groups G --key-dir DIR`: the token is the last
/// stdout line.
fn issue_token(tollctl: &Path, key_dir: &Path, groups: &[String]) -> anyhow::Result<String> {
    let mut cmd = Command::new(tollctl);
    cmd.args([
        "token",
        "issue",
        "--sub",
        TOKEN_SUBJECT,
        "--ttl",
        "24h",
        "--key-dir",
    ])
    .arg(key_dir);
    if !groups.is_empty() {
        cmd.arg("--groups").arg(groups.join(","));
    }
    let out = run_captured(&mut cmd, "tollctl token issue")?;
    let token = out
        .lines()
        .last()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .context("tollctl token issue printed no token")?;
    Ok(token.to_owned())
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit (children inherit it): the idle
/// scenario holds thousands of sockets in this process and in each proxy.
pub fn raise_nofile_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    }
    Ok(hard)
}
