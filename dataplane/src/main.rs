//! `tollgate`: the data plane binary. `tollgate run --config PATH` starts one shard per core;
//! `tollgate check-config --config PATH` validates a configuration and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Policy-enforcing gateway for databases and services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Path of the TOML configuration (see deploy/examples/tollgate.toml).
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration (including secrets and TLS files) and exit.
    CheckConfig {
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tollgate::runtime::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::CheckConfig { config } => check(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    tollgate::identity::install_crypto_provider();
    let config = tollgate::config::Config::load(path)?;
    let shutdown = tollgate::runtime::Shutdown::new();
    let gw = tollgate::session::Gateway::new(config, shutdown, None)?;
    println!(
        "config ok: listen {}, {} connection(s)",
        gw.config.gateway.listen,
        gw.upstreams.len()
    );
    Ok(())
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    tollgate::identity::install_crypto_provider();
    let config = tollgate::config::Config::load(path)?;
    let shards = match config.gateway.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let io_memory = config.gateway.io_memory_kib * 1024;
    tollgate::runtime::check_memlock(shards, io_memory)?;
    // The recorder starts first: it recovers what a crashed predecessor left behind before
    // any new session is recorded.
    let recorder = if config.record.enabled {
        let recorder =
            tollgate::record::Recorder::start(&config.record, shards).with_context(|| {
                format!(
                    "cannot start the session recorder in {}",
                    config.record.dir.display()
                )
            })?;
        Some(std::sync::Arc::new(recorder))
    } else {
        tracing::warn!("[record] enabled = false: sessions are not recorded");
        None
    };
    let shutdown = tollgate::runtime::Shutdown::new();
    let gw = match tollgate::session::Gateway::new(config, shutdown, recorder.clone()) {
        Ok(gw) => gw,
        Err(e) => {
            if let Some(r) = &recorder {
                r.shutdown();
            }
            return Err(e.into());
        }
    };
    let result = serve(&gw, shards, io_memory);
    // Every session has ended: close the recording files whatever happened.
    if let Some(r) = &recorder {
        r.shutdown();
    }
    result
}

fn serve(
    gw: &std::sync::Arc<tollgate::session::Gateway>,
    shards: usize,
    io_memory: usize,
) -> anyhow::Result<()> {
    let g = &gw.config.gateway;

    // Fail here, with a clear message, if the address is taken by a process that does not
    // share it (SO_REUSEPORT lets the shards, and a replacement gateway, bind it together).
    probe_listen(g.listen).with_context(|| format!("cannot listen on {}", g.listen))?;

    let policy = gw.policy.clone();
    gw.shutdown
        .watch_signals(gw.config.drain_timeout(), move || {
            if let Some(store) = &policy {
                store.request_reload();
            }
        })
        .context("cannot install signal handlers")?;
    // Policy changes are compiled and tested off the hot path; shards pick up a new version
    // with one atomic load per decision.
    let _watcher = match &gw.policy {
        Some(store) => Some(
            store
                .watch(std::time::Duration::from_millis(
                    gw.config.policy.watch_interval_ms.max(100),
                ))
                .context("cannot watch the policy directory")?,
        ),
        None => None,
    };
    tracing::info!(
        listen = %g.listen,
        shards,
        connections = gw.upstreams.len(),
        tls = gw.tls.is_some(),
        policy = gw.policy.as_ref().map(|p| format!("{:016x}", p.version())).unwrap_or_else(|| "off".into()),
        "tollgate starting"
    );
    let shard_gw = std::sync::Arc::clone(gw);
    let results = tollgate::runtime::run_shards(shards, io_memory, move || {
        let gw = std::sync::Arc::clone(&shard_gw);
        async move {
            tollgate::session::serve_shard(gw)
                .await
                .map_err(|e| e.to_string())
        }
    })?;
    let failures: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
    if !failures.is_empty() {
        anyhow::bail!("shard failed: {}", failures.join("; "));
    }
    tracing::info!("tollgate stopped");
    Ok(())
}

fn probe_listen(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(())
}
