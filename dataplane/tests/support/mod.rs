//! Integration-test harness (every tier-3 test uses it through `mod support;`): a throwaway
//! PostgreSQL cluster with the sample `orders` schema, and a launcher for the `tollgate` binary.
//!
//! Nothing here assumes a server the test did not start. A cluster lives in its own directory
//! under /dev/shm or /tmp (data, unix socket and server log), listens on 127.0.0.1 on a free
//! port and is stopped (`pg_ctl stop -m immediate`) and removed when it is dropped, when the
//! test process exits (`PgCluster::shared`) or, as a last resort, when the process dies without
//! running any cleanup (a reaper process per cluster notices its pipe close).
//!
//! Environment knobs: `TOLLGATE_PG_BINDIR` picks the PostgreSQL binaries, `TOLLGATE_PG_TMPDIR`
//! where cluster directories go, `TOLLGATE_KEEP_PG=1` keeps them after the test for a
//! post-mortem, `TOLLGATE_TEST_RUST_LOG` overrides the gateway's `RUST_LOG=info`.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]
// The harness needs a few libc calls (geteuid, atexit, flock, kill); each block says why it
// is sound.
#![allow(unsafe_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};

/// Role the gateway logs in as for the `orders` connection (SCRAM-SHA-256 password).
pub const ORDERS_USER: &str = "orders_app";
/// Role whose password is stored as md5 and whose pg_hba line says `md5`.
pub const MD5_USER: &str = "md5_app";
/// Role with a pg_hba `trust` line for 127.0.0.1 and no password.
pub const TRUST_USER: &str = "trust_app";
/// Rows in the sample tables.
pub const CUSTOMER_ROWS: usize = 50;
pub const ORDER_ROWS: usize = 200;

// ---------------------------------------------------------------------------------------------
// PostgreSQL cluster
// ---------------------------------------------------------------------------------------------

/// A throwaway PostgreSQL cluster on 127.0.0.1 with the sample `orders` database.
pub struct PgCluster {
    /// TCP port on 127.0.0.1 (also the unix socket's port number).
    pub port: u16,
    /// The cluster's directory: `data/`, the unix socket and `postgres.log`. Removed on stop.
    pub dir: PathBuf,
    /// Directory holding initdb, pg_ctl, psql, pgbench ...
    pub bin_dir: PathBuf,
    /// Random SCRAM-SHA-256 password of `orders_app` (owner of database `orders`).
    pub upstream_password: String,
    /// Random password of `md5_app`, stored as an md5 hash.
    pub md5_password: String,
    /// True when the harness runs as root and so runs the server as the `postgres` user.
    as_postgres_user: bool,
    stopped: AtomicBool,
    /// Write end of the reaper's stdin: when this process dies, the reaper sees EOF and
    /// stops the cluster even if no destructor or atexit handler ran (SIGKILL, timeouts).
    reaper: Mutex<Option<ChildStdin>>,
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

extern "C" fn stop_shared_cluster() {
    // A panic must not cross the FFI boundary; during exit there is nobody left to tell.
    let _ = std::panic::catch_unwind(|| {
        if let Some(cluster) = SHARED.get() {
            cluster.stop();
        }
    });
}

impl PgCluster {
    /// Creates, starts and fills a new cluster; returns once it accepts connections.
    /// Panics with what failed (command, its output, the server log tail).
    ///
    /// The initialised and filled data directory is built once per harness version into
    /// `CARGO_TARGET_TMPDIR` and copied for each cluster (a copy and a start take a fraction
    /// of initdb + schema, which matters under nextest's process per test); each copy then
    /// gets its own port, socket directory and fresh random passwords.
    pub fn start() -> PgCluster {
        let template = template_data_dir();
        let mut cluster = PgCluster::empty();
        // From here on a panic drops `cluster`, which stops the server and removes the dir.
        copy_dir(&template, &cluster.data_dir());
        cluster.use_own_socket_dir();
        cluster.start_server();
        cluster.set_passwords();
        cluster
    }

    /// A cluster directory with nothing in it yet, and its reaper.
    fn empty() -> PgCluster {
        let as_postgres_user = running_as_root();
        let cluster = PgCluster {
            port: 0,
            dir: make_cluster_dir(as_postgres_user),
            bin_dir: bin_dir().to_owned(),
            upstream_password: random_secret(),
            md5_password: random_secret(),
            as_postgres_user,
            stopped: AtomicBool::new(false),
            reaper: Mutex::new(None),
        };
        cluster.spawn_reaper();
        cluster
    }

    /// The cluster shared by all tests of this test binary (under nextest: of this test
    /// process), created on first use and stopped and removed when the process exits.
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(|| {
            let cluster = PgCluster::start();
            // SAFETY: `stop_shared_cluster` is a plain `extern "C" fn()` that catches every
            // panic and only touches the `SHARED` static, which lives until the process ends.
            let rc = unsafe { libc::atexit(stop_shared_cluster) };
            if rc != 0 {
                eprintln!("support: atexit failed; the reaper will stop the shared cluster");
            }
            cluster
        })
    }

    /// Runs `sql` (one or more statements, any of which may be CREATE DATABASE) as the
    /// superuser through psql over the unix socket, in database `db`. Returns psql's `-At`
    /// stdout without the final newline; panics with psql's stderr when a statement fails.
    pub fn psql_super(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bin("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-f",
                "-",
            ]);
        clear_libpq_env(&mut cmd);
        let out = run_with_stdin(&mut cmd, sql.as_bytes());
        if !out.status.success() {
            panic!(
                "psql as superuser in database {db:?} failed ({}):\n--- sql ---\n{}\n--- psql stderr ---\n{}\n--- server log (tail) ---\n{}",
                out.status,
                truncate(sql, 2000),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(30)
            );
        }
        let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        while stdout.ends_with('\n') {
            stdout.pop();
        }
        stdout
    }

    /// tokio-postgres connection string for `orders_app` straight to the server over TCP.
    pub fn direct_conninfo(&self) -> String {
        self.conninfo_as(ORDERS_USER, &self.upstream_password, "orders")
    }

    /// tokio-postgres connection string for any role over TCP (empty password: none sent).
    pub fn conninfo_as(&self, user: &str, password: &str, db: &str) -> String {
        let mut s = format!(
            "host=127.0.0.1 port={} user={} dbname={} sslmode=disable connect_timeout=10",
            self.port,
            conninfo_quote(user),
            conninfo_quote(db)
        );
        if !password.is_empty() {
            let _ = write!(s, " password={}", conninfo_quote(password));
        }
        s
    }

    /// `upstream` address for a gateway connection ("127.0.0.1:PORT").
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A binary of this PostgreSQL install (pgbench, psql ...), else the bare name for PATH.
    pub fn bin(&self, name: &str) -> PathBuf {
        let path = self.bin_dir.join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// `pgbench -i -s scale` into database `orders` as `orders_app` (so the tables belong to
    /// it and pgbench can later run through the gateway). Re-running it recreates the tables.
    pub fn pgbench_init(&self, scale: u32) {
        let mut cmd = Command::new(self.bin("pgbench"));
        cmd.args(["-i", "-q", "-s", &scale.to_string(), "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", ORDERS_USER, "orders"]);
        clear_libpq_env(&mut cmd);
        cmd.env("PGPASSWORD", &self.upstream_password);
        let out = run(&mut cmd, "pgbench -i");
        if !out.status.success() {
            panic!(
                "pgbench -i -s {scale} orders (as {ORDERS_USER}) failed ({}):\n{}{}\n--- server log (tail) ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(30)
            );
        }
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path().display()));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server-side command (initdb, pg_ctl), run as `postgres` when we are root.
    fn server_command(&self, name: &str) -> Command {
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin(name));
            c
        } else {
            Command::new(self.bin(name))
        };
        // The server user may not be allowed into the test's working directory.
        cmd.current_dir(&self.dir);
        clear_libpq_env(&mut cmd);
        cmd
    }

    fn initdb(&self) {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
        let out = run(&mut cmd, "initdb");
        if !out.status.success() {
            panic!(
                "initdb -D {} failed ({}):\n{}{}",
                self.data_dir().display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // pg_hba.conf is first-match: these two lines go above initdb's scram-sha-256 lines.
        let hba_path = self.data_dir().join("pg_hba.conf");
        let hba = fs::read_to_string(&hba_path).expect("read pg_hba.conf");
        let hba = format!(
            "# tollgate test harness: the gateway's md5 and trust upstream paths\n\
             host all {MD5_USER} 127.0.0.1/32 md5\n\
             host all {TRUST_USER} 127.0.0.1/32 trust\n\
             {hba}"
        );
        fs::write(&hba_path, hba).expect("write pg_hba.conf");
        let conf = "\n# tollgate test harness\n\
             listen_addresses = '127.0.0.1'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 300\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n";
        append(&self.data_dir().join("postgresql.conf"), conf);
    }

    /// The unix socket goes into the cluster's own directory (the last setting wins).
    fn use_own_socket_dir(&self) {
        append(
            &self.data_dir().join("postgresql.conf"),
            &format!("unix_socket_directories = '{}'\n", self.dir.display()),
        );
    }

    /// Gives the roles copied from the template this cluster's own random passwords.
    fn set_passwords(&self) {
        let (pw, md5) = (&self.upstream_password, &self.md5_password);
        self.psql_super(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256';\n\
                 ALTER ROLE {ORDERS_USER} PASSWORD '{pw}';\n\
                 SET password_encryption = 'md5';\n\
                 ALTER ROLE {MD5_USER} PASSWORD '{md5}';\n"
            ),
        );
    }

    /// Starts the server on a free port, retrying with another port if the one picked was
    /// taken in the meantime by another process.
    fn start_server(&mut self) {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            self.port = free_port();
            // The last `port` line in postgresql.conf wins.
            append(
                &self.data_dir().join("postgresql.conf"),
                &format!("port = {}\n", self.port),
            );
            let mut cmd = self.server_command("pg_ctl");
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "start"]);
            let out = run(&mut cmd, "pg_ctl start");
            if out.status.success() {
                return;
            }
            let log = self.log_tail(20);
            let port_taken = log.contains("could not bind") || log.contains("already in use");
            if port_taken && attempt < ATTEMPTS {
                continue;
            }
            panic!(
                "pg_ctl start (port {}) failed ({}):\n{}{}\n--- server log (tail) ---\n{log}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn create_roles_and_schema(&self) {
        let pw = &self.upstream_password;
        let md5 = &self.md5_password;
        self.psql_super(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256';\n\
                 CREATE ROLE {ORDERS_USER} LOGIN PASSWORD '{pw}';\n\
                 SET password_encryption = 'md5';\n\
                 CREATE ROLE {MD5_USER} LOGIN PASSWORD '{md5}';\n\
                 RESET password_encryption;\n\
                 CREATE ROLE {TRUST_USER} LOGIN;\n\
                 CREATE DATABASE orders OWNER {ORDERS_USER};\n"
            ),
        );
        self.psql_super("orders", &sample_schema_sql());
    }

    /// Starts the reaper: `sh` blocks reading a pipe only this process writes to, and on
    /// EOF (this process is gone) stops the server and removes the directory. It runs in its
    /// own process group so a signal to the test's group (Ctrl-C, nextest timeouts) spares it.
    fn spawn_reaper(&self) {
        let script = "cat >/dev/null 2>&1; \"$@\" >/dev/null 2>&1; \
                      [ -n \"$TOLLGATE_KEEP_PG\" ] || rm -rf -- \"$TOLLGATE_REAP_DIR\"";
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script, "tollgate-pg-reaper"]);
        if self.as_postgres_user {
            cmd.args(["runuser", "-u", "postgres", "--"]);
        }
        cmd.arg(self.bin("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "stop"])
            .env("TOLLGATE_REAP_DIR", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        match cmd.spawn() {
            Ok(mut child) => {
                *self.reaper.lock().unwrap_or_else(|p| p.into_inner()) = child.stdin.take();
            }
            // Not fatal: Drop and atexit still clean up in every ordinary exit.
            Err(e) => eprintln!("support: cannot start the cluster reaper (sh): {e}"),
        }
    }

    /// Stops the server (immediate) and removes its directory; idempotent.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.data_dir().join("postmaster.pid").exists() {
            let mut cmd = self.server_command("pg_ctl");
            cmd.arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
        if std::env::var_os("TOLLGATE_KEEP_PG").is_some() {
            eprintln!(
                "support: TOLLGATE_KEEP_PG set, keeping {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
        // Closing the pipe lets the reaper exit; it finds nothing left to do.
        drop(self.reaper.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, release).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// Connects with tokio-postgres (no TLS) and drives the connection on a spawned task.
pub async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        // Errors here surface to the test through the client's next call.
        let _ = connection.await;
    });
    Ok(client)
}

/// True when the Luhn checksum of the digits in `s` holds (card numbers in the sample data
/// all pass, so masking detectors can be tested on them).
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 12 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { luhn_double(d) } else { d })
        .sum();
    sum.is_multiple_of(10)
}

/// The sample schema and data, created as `orders_app` so it owns every object. Data is
/// deterministic: tests may assert on counts, sums and particular rows.
fn sample_schema_sql() -> String {
    const FIRST: [&str; 25] = [
        "Alice",
        "Bob",
        "Carmen",
        "Dmitri",
        "Emma",
        "Farid",
        "Grace",
        "Hiroshi",
        "Isabel",
        "Jamal",
        "Keiko",
        "Liam",
        "Mariana",
        "Nikolai",
        "Olivia",
        "Priya",
        "Quentin",
        "Rosa",
        "Sven",
        "Tamara",
        "Umar",
        "Valentina",
        "Wei",
        "Ximena",
        "Yusuf",
    ];
    const LAST: [&str; 12] = [
        "Anderson",
        "Okafor",
        "Nguyen",
        "O'Brien",
        "Schmidt",
        "Kowalski",
        "Haddad",
        "Tanaka",
        "Fernandes",
        "Johansson",
        "Patel",
        "Moreau",
    ];
    const DOMAINS: [&str; 4] = ["example.com", "example.org", "example.net", "mail.example"];
    let mut sql = String::from(
        "SET ROLE orders_app;\n\
         CREATE TABLE customers (\n\
           id serial PRIMARY KEY,\n\
           name text NOT NULL,\n\
           email text NOT NULL,\n\
           card_number text,\n\
           created_at timestamptz NOT NULL DEFAULT now()\n\
         );\n\
         CREATE TABLE orders (\n\
           id serial PRIMARY KEY,\n\
           customer_id int NOT NULL REFERENCES customers,\n\
           amount numeric(10,2) NOT NULL,\n\
           status text NOT NULL,\n\
           created_at timestamptz NOT NULL\n\
         );\n\
         INSERT INTO customers (name, email, card_number, created_at) VALUES\n",
    );
    for i in 0..CUSTOMER_ROWS {
        let first = FIRST[i % FIRST.len()];
        let last = LAST[(i + (i / FIRST.len()) * 3) % LAST.len()];
        let name = format!("{first} {last}");
        let local: String = format!("{first}.{last}")
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let email = format!("{local}@{}", DOMAINS[i % DOMAINS.len()]);
        let card = card_number(i as u64);
        let sep = if i + 1 == CUSTOMER_ROWS { ";" } else { "," };
        let _ = writeln!(
            sql,
            "  ('{}', '{}', '{}', timestamptz '2023-01-01 09:00:00+00' + interval '{} days'){sep}",
            name.replace('\'', "''"),
            email,
            card,
            i * 7
        );
    }
    let _ = write!(
        sql,
        "INSERT INTO orders (customer_id, amount, status, created_at)\n\
         SELECT 1 + (g * 7) % {CUSTOMER_ROWS},\n\
                round((5 + (g * 37) % 995 + (g % 100) / 100.0)::numeric, 2),\n\
                (ARRAY['pending', 'paid', 'shipped', 'delivered', 'refunded'])[1 + g % 5],\n\
                timestamptz '2024-01-01 00:00:00+00' + g * interval '7 hours'\n\
         FROM generate_series(1, {ORDER_ROWS}) AS g;\n\
         RESET ROLE;\n\
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MD5_USER}, {TRUST_USER};\n\
         ANALYZE customers, orders;\n"
    );
    sql
}

fn luhn_double(d: u32) -> u32 {
    if d * 2 > 9 {
        d * 2 - 9
    } else {
        d * 2
    }
}

/// A deterministic 16-digit Visa-style number with a valid Luhn check digit.
fn card_number(i: u64) -> String {
    let body = format!(
        "4{:014}",
        (i * 7_919_104_729 + 532_015_112_830) % 100_000_000_000_000
    );
    let digits: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
    // Double every second digit counting from the right of the full number, i.e. starting
    // with the last digit of the body since the check digit goes after it.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 0 { luhn_double(d) } else { d })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The PostgreSQL binaries, found once per process.
fn bin_dir() -> &'static Path {
    static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();
    BIN_DIR.get_or_init(find_bin_dir)
}

/// The data directory every cluster starts from: initdb, the harness's pg_hba and settings,
/// the roles and the sample schema, cleanly shut down. Built on first use into
/// `CARGO_TARGET_TMPDIR` under a name that hashes everything that goes into it, so a changed
/// harness or another PostgreSQL builds its own. A lock file serialises the build between
/// test processes; the copy into place is a rename, so a template is never seen half-made.
fn template_data_dir() -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(locked_template).clone()
}

fn locked_template() -> PathBuf {
    use std::hash::{Hash, Hasher};
    use std::os::fd::AsRawFd;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bin_dir().hash(&mut h);
    include_str!("mod.rs").hash(&mut h); // the schema, settings and roles are all in here
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let template = root.join(format!("pg-template-{:016x}", h.finish()));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    // One process builds it while the others (nextest runs tests as parallel processes) wait
    // on the lock, then find it built.
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let lock_path = root.join("pg-template.lock");
    let lock = fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    // SAFETY: flock on a descriptor that `lock` owns and keeps open until this function
    // returns; closing it releases the lock, also when a panic unwinds.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, 0, "flock {}: {err}", lock_path.display());
    if !template.join("PG_VERSION").is_file() {
        build_template(root, &template);
    }
    template
}

/// initdb, configure, start, fill, stop cleanly, and move the data directory to `template`.
fn build_template(root: &Path, template: &Path) {
    let mut builder = PgCluster::empty();
    builder.initdb();
    builder.use_own_socket_dir();
    builder.start_server();
    builder.create_roles_and_schema();
    let mut cmd = builder.server_command("pg_ctl");
    cmd.arg("-D")
        .arg(builder.data_dir())
        .args(["-m", "fast", "-w", "-t", "60", "stop"]);
    let out = run(&mut cmd, "pg_ctl stop");
    assert!(
        out.status.success(),
        "pg_ctl stop -m fast of the template cluster failed ({}): {}\n--- server log (tail) ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        builder.log_tail(20)
    );
    let staging = root.join(format!(
        "pg-template-staging-{}-{}",
        std::process::id(),
        Alphanumeric.sample_string(&mut rand::rng(), 6)
    ));
    copy_dir(&builder.data_dir(), &staging);
    fs::rename(&staging, template).unwrap_or_else(|e| {
        panic!(
            "move the PostgreSQL template {} to {}: {e}",
            staging.display(),
            template.display()
        )
    });
}

/// `cp -a`: keeps the `postgres` ownership and 0700 modes a data directory needs. Plain
/// read/write copies: copy_file_range and hole probing made it ten times slower here.
fn copy_dir(from: &Path, to: &Path) {
    let mut cmd = Command::new("cp");
    cmd.args(["-a", "--reflink=never", "--sparse=never"])
        .arg(from)
        .arg(to);
    let out = run(&mut cmd, "cp -a");
    assert!(
        out.status.success(),
        "cp -a {} {} failed ({}): {}",
        from.display(),
        to.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find_bin_dir() -> PathBuf {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("TOLLGATE_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            has_initdb(&dir),
            "TOLLGATE_PG_BINDIR={} has no initdb",
            dir.display()
        );
        return dir;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_initdb(&dir) {
                return dir;
            }
        }
    }
    // Debian keeps server binaries per major version, off PATH.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if has_initdb(&dir) {
            return dir;
        }
    }
    panic!(
        "no PostgreSQL server binaries found: no initdb under `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin or PATH. Install them (Debian: apt-get install postgresql \
         postgresql-contrib) or set TOLLGATE_PG_BINDIR"
    );
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where cluster directories go: `TOLLGATE_PG_TMPDIR`, else /dev/shm when it is a tmpfs with
/// at least 1 GiB free (a throwaway cluster needs no disk, and copying the template there took
/// a twentieth of the time it took on a busy disk), else /tmp. Short paths: the unix socket
/// lives in the cluster directory and socket paths are limited to 107 bytes.
fn cluster_parent_dir() -> &'static Path {
    static PARENT: OnceLock<PathBuf> = OnceLock::new();
    PARENT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("TOLLGATE_PG_TMPDIR") {
            return PathBuf::from(dir);
        }
        let shm_free_kib = Command::new("df")
            .args(["-Pk", "/dev/shm"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .and_then(|out| {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let line = text.lines().nth(1)?.to_owned();
                line.split_whitespace().nth(3)?.parse::<u64>().ok()
            });
        if shm_free_kib.is_some_and(|kib| kib >= 1024 * 1024) {
            PathBuf::from("/dev/shm")
        } else {
            PathBuf::from("/tmp")
        }
    })
}

/// Creates `<parent>/tollgate-pg-PID-N-RANDOM`, owned by `postgres` when we are root.
fn make_cluster_dir(for_postgres_user: bool) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = cluster_parent_dir().join(format!(
        "tollgate-pg-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        Alphanumeric.sample_string(&mut rand::rng(), 6)
    ));
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", dir.display()));
    if for_postgres_user {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("run `id`");
            assert!(
                out.status.success(),
                "running as root, PostgreSQL must run as the `postgres` user, but `id {flag} postgres` failed: {} \
                 (create it: useradd --system --user-group postgres)",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("numeric id")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown postgres {}: {e}", dir.display()));
    }
    dir
}

fn random_secret() -> String {
    // Alphanumeric only: safe unquoted in SQL literals, conninfo strings and TOML.
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// libpq environment variables that would silently change what a command connects to.
fn clear_libpq_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGDATA",
        "PGCLUSTER",
    ] {
        cmd.env_remove(var);
    }
}

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({:?}): {e}", cmd.get_program()))
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // A separate writer keeps a large script from deadlocking against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for child");
    let _ = writer.join();
    out
}

fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

/// Quotes a libpq/tokio-postgres conninfo value.
fn conninfo_quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-+/:".contains(c))
    {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway launcher
// ---------------------------------------------------------------------------------------------

/// How `Gateway::start` configures the gateway. Use `..Default::default()`.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `gateway.shards`.
    pub shards: usize,
    /// Generate a self-signed cert+key for localhost/127.0.0.1 and set tls_cert/tls_key.
    pub tls: bool,
    /// `gateway.allow_plaintext_secrets_on_loopback`.
    pub allow_plaintext_on_loopback: bool,
    /// `gateway.drain_timeout_s`.
    pub drain_timeout_s: u64,
    /// Extra `key = value` lines placed inside `[gateway]` (e.g. "auth_timeout_s = 2").
    pub gateway_toml: String,
    /// Appended verbatim after the `[[connection]]` tables: start it with a table header.
    pub extra_toml: String,
    /// `[policy] dir`; `None` turns the policy stage off (`enabled = false`).
    pub policy_dir: Option<PathBuf>,
    /// Extra `key = value` lines placed inside `[policy]` (e.g. "cache_capacity = 10").
    pub policy_toml: String,
    /// Record sessions (`[record] enabled`), by default into `recordings/` of the gateway's
    /// temp dir.
    pub record: bool,
    /// `[record] dir` when it must outlive the gateway (a restart on the same archive).
    pub record_dir: Option<PathBuf>,
    /// Extra `key = value` lines placed inside `[record]` (e.g. "max_result_bytes = 4096").
    pub record_toml: String,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            shards: 2,
            tls: false,
            allow_plaintext_on_loopback: true,
            drain_timeout_s: 5,
            gateway_toml: String::new(),
            extra_toml: String::new(),
            policy_dir: None,
            policy_toml: String::new(),
            record: true,
            record_dir: None,
            record_toml: String::new(),
        }
    }
}

/// A running `tollgate run --config ...` in front of a `PgCluster`.
pub struct Gateway {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// `[record] dir`.
    pub record_dir: PathBuf,
    /// Config, secrets, keys, certificate and log; removed on drop.
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// The local issuer's key directory; `jwks.json` in it is the config's `jwks_file`.
    pub key_dir: PathBuf,
    /// The self-signed certificate (PEM) when `opts.tls`, for clients to trust.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    child: Child,
}

impl Gateway {
    /// Writes the config, starts the gateway and waits (30 s at most) until its port accepts
    /// TCP. Panics with the gateway's log if it exits or never listens.
    pub fn start(cluster: &PgCluster, opts: GatewayOptions) -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-gw-")
            .tempdir()
            .expect("create the gateway's temp dir");
        // The issuer creates its key pair and publishes the JWKS the config points at.
        let key_dir = dir.path().join("keys");
        let jwks = tollgate::identity::LocalIssuer::load_or_create(&key_dir)
            .unwrap_or_else(|e| panic!("LocalIssuer::load_or_create({}): {e:?}", key_dir.display()))
            .jwks_path();

        write_secret(&dir.path().join("orders.pw"), &cluster.upstream_password);
        write_secret(&dir.path().join("orders_md5.pw"), &cluster.md5_password);
        let (tls_cert, tls_key) = if opts.tls {
            let (c, k) = self_signed_cert(dir.path());
            (Some(c), Some(k))
        } else {
            (None, None)
        };

        let config_path = dir.path().join("tollgate.toml");
        let log_path = dir.path().join("tollgate.log");
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let config = gateway_config(
                addr,
                cluster,
                &opts,
                dir.path(),
                &jwks,
                tls_cert.as_deref().zip(tls_key.as_deref()),
            );
            fs::write(&config_path, &config).expect("write gateway config");
            let log = fs::File::create(&log_path).expect("create gateway log");
            let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
                .arg("run")
                .arg("--config")
                .arg(&config_path)
                .env(
                    "RUST_LOG",
                    std::env::var("TOLLGATE_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                // Plain text in the log file, so tests can search it.
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log fd"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_tollgate")));
            match wait_listening(&mut child, addr, Duration::from_secs(30)) {
                Ok(()) => {
                    return Gateway {
                        addr,
                        record_dir: opts
                            .record_dir
                            .clone()
                            .unwrap_or_else(|| dir.path().join("recordings")),
                        dir,
                        config_path,
                        log_path,
                        key_dir,
                        tls_cert,
                        tls_key,
                        child,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let logs = read_lossy(&log_path);
                    let port_taken =
                        logs.contains("Address already in use") || logs.contains("AddrInUse");
                    if port_taken && attempt < ATTEMPTS {
                        continue; // same keys and secrets, another port
                    }
                    panic!(
                        "tollgate did not start listening on {addr}: {why}\n--- config {} ---\n{config}\n--- tollgate log ---\n{logs}",
                        config_path.display()
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The local issuer whose public key the gateway trusts.
    pub fn issuer(&self) -> tollgate::identity::LocalIssuer {
        tollgate::identity::LocalIssuer::load_or_create(&self.key_dir).unwrap_or_else(|e| {
            panic!(
                "LocalIssuer::load_or_create({}): {e:?}",
                self.key_dir.display()
            )
        })
    }

    /// A token for `sub` with `groups`, signed by the local issuer.
    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.issuer()
            .issue(&tollgate::identity::TokenRequest::new(sub, groups))
            .unwrap_or_else(|e| panic!("issuing a token for {sub} {groups:?}: {e:?}"))
    }

    /// tokio-postgres conninfo through the gateway, with a fresh token as the password.
    pub fn conninfo(&self, sub: &str, groups: &[&str], connection: &str) -> String {
        self.conninfo_with_password(sub, connection, &self.token(sub, groups))
    }

    /// Like `conninfo` with any password (a tampered or expired token, say).
    pub fn conninfo_with_password(&self, user: &str, connection: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={} password={} sslmode=disable connect_timeout=10",
            self.addr.port(),
            conninfo_quote(user),
            conninfo_quote(connection),
            conninfo_quote(password)
        )
    }

    /// Everything the gateway has written to stdout and stderr so far.
    pub fn logs(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "gateway log has no {needle:?} after {timeout:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Logs in with raw protocol messages (start-up, then the token as the password) and
    /// returns the socket just after the first ReadyForQuery, for tests that send bytes a
    /// client library would not.
    pub fn raw_login(&self, sub: &str, groups: &[&str]) -> std::net::TcpStream {
        use std::io::Write;
        use tollgate::proto::pg;
        let mut s = std::net::TcpStream::connect(self.addr).expect("connect to the gateway");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut out = Vec::new();
        pg::encode_startup(&mut out, &[("user", sub), ("database", "orders")]);
        s.write_all(&out).expect("startup");
        read_until_tag(&mut s, b'R');
        out.clear();
        pg::encode_password(&mut out, &self.token(sub, groups));
        s.write_all(&out).expect("password");
        read_until_tag(&mut s, b'Z');
        s
    }

    /// Runs the cluster's pgbench through the gateway as `sub` (with a fresh token for
    /// `groups`) on connection "orders", with `args` before the database name.
    pub fn pgbench(
        &self,
        cluster: &PgCluster,
        sub: &str,
        groups: &[&str],
        args: &[&str],
    ) -> std::process::Output {
        Command::new(cluster.bin("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.addr.port().to_string(),
                "-U",
                sub,
                "-n",
            ])
            .args(args)
            .arg("orders")
            .env("PGPASSWORD", self.token(sub, groups))
            .output()
            .expect("run pgbench")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (libc::SIGTERM, SIGINT, SIGHUP ...) to the gateway.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the pid of our own child, which we have not yet waited for,
        // so the pid cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILL (no chance to flush or close anything) and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit status. On timeout: SIGKILL and panic.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "tollgate did not exit within {timeout:?} of SIGTERM; killed it.\n--- tollgate log ---\n{}",
                        self.logs()
                    );
                }
                Err(e) => panic!("waiting for tollgate: {e}"),
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Polls until `addr` accepts TCP, the child exits, or `timeout` passes.
fn wait_listening(child: &mut Child, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("it exited with {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("port still closed after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn write_secret(path: &Path, secret: &str) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(secret.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `openssl req` for a P-256 self-signed certificate valid for localhost and 127.0.0.1.
fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("tls-cert.pem");
    let key = dir.join("tls-key.pem");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
    ])
    .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
    .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    let out = run(&mut cmd, "openssl req");
    assert!(
        out.status.success(),
        "openssl req -x509 (self-signed test certificate) failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The repository's shipped `policies/`, for `GatewayOptions::policy_dir` (the gateway's
/// default, `policies`, is relative to its working directory, which for tests is `dataplane/`).
pub fn workspace_policies() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    dir.canonicalize().unwrap_or(dir)
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

fn gateway_config(
    addr: SocketAddr,
    cluster: &PgCluster,
    opts: &GatewayOptions,
    dir: &Path,
    jwks: &Path,
    tls: Option<(&Path, &Path)>,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "[gateway]");
    let _ = writeln!(t, "listen = {}", toml_str(&addr.to_string()));
    let _ = writeln!(t, "shards = {}", opts.shards);
    let _ = writeln!(
        t,
        "allow_plaintext_secrets_on_loopback = {}",
        opts.allow_plaintext_on_loopback
    );
    let _ = writeln!(t, "drain_timeout_s = {}", opts.drain_timeout_s);
    if let Some((cert, key)) = tls {
        let _ = writeln!(t, "tls_cert = {}", toml_path(cert));
        let _ = writeln!(t, "tls_key = {}", toml_path(key));
    }
    if !opts.gateway_toml.is_empty() {
        let _ = writeln!(t, "{}", opts.gateway_toml);
    }
    let _ = writeln!(t, "\n[identity]");
    let _ = writeln!(t, "issuer = \"tollgate-local\"");
    let _ = writeln!(t, "audience = \"tollgate\"");
    let _ = writeln!(t, "jwks_file = {}", toml_path(jwks));
    let _ = writeln!(t, "\n[policy]");
    match &opts.policy_dir {
        Some(policies) => {
            let _ = writeln!(t, "dir = {}", toml_path(policies));
            let _ = writeln!(t, "watch_interval_ms = 200");
        }
        None => {
            let _ = writeln!(t, "enabled = false");
        }
    }
    if !opts.policy_toml.is_empty() {
        let _ = writeln!(t, "{}", opts.policy_toml);
    }
    let _ = writeln!(t, "\n[record]");
    let _ = writeln!(t, "enabled = {}", opts.record);
    let _ = writeln!(t, "instance = \"test\"");
    let record_dir = opts
        .record_dir
        .clone()
        .unwrap_or_else(|| dir.join("recordings"));
    let _ = writeln!(t, "dir = {}", toml_path(&record_dir));
    if !opts.record_toml.is_empty() {
        let _ = writeln!(t, "{}", opts.record_toml);
    }
    let connections = [
        ("orders", ORDERS_USER, Some("orders.pw")),
        ("orders_md5", MD5_USER, Some("orders_md5.pw")),
        ("orders_trust", TRUST_USER, None),
    ];
    for (name, user, secret) in connections {
        let _ = writeln!(t, "\n[[connection]]");
        let _ = writeln!(t, "name = {}", toml_str(name));
        let _ = writeln!(t, "protocol = \"postgres\"");
        let _ = writeln!(t, "upstream = {}", toml_str(&cluster.addr()));
        let _ = writeln!(t, "database = \"orders\"");
        let _ = writeln!(t, "user = {}", toml_str(user));
        if let Some(file) = secret {
            let _ = writeln!(t, "password_file = {}", toml_path(&dir.join(file)));
        }
        let _ = writeln!(t, "labels = {{ env = \"prod\" }}");
    }
    if !opts.extra_toml.is_empty() {
        let _ = writeln!(t, "\n{}", opts.extra_toml);
    }
    t
}

/// Reads backend messages until one with `tag` has arrived whole; returns every byte read.
pub fn read_until_tag(s: &mut std::net::TcpStream, tag: u8) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut rest = &got[..];
        while let Ok(Some(frame)) = tollgate::proto::pg::frame(rest, 1 << 20) {
            if frame.tag == tag {
                return got;
            }
            rest = &rest[frame.wire_len()..];
        }
        let n = s.read(&mut buf).expect("read from the gateway");
        assert!(n > 0, "connection closed before message {}", tag as char);
        got.extend_from_slice(&buf[..n]);
    }
}
