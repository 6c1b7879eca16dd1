//! tollctl: the Tollgate admin binary. Commands come in groups, one per area of the gateway
//! (`token`, `policy`, `sessions`/`replay`/`recordings`), each group in its own module with
//! its own clap subcommand enum.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod policy;
mod recordings;
mod token;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tollgate admin: identity tokens, policies, recorded sessions and the recording archive.
#[derive(Debug, Parser)]
#[command(name = "tollctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint and inspect identity tokens with the embedded development issuer.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Check, test, evaluate and explain policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Recorded sessions.
    #[command(subcommand)]
    Sessions(recordings::SessionsCommand),
    /// Print one recorded session as it happened: statements, decisions and results.
    Replay(recordings::ReplayArgs),
    /// The recording archive itself.
    #[command(subcommand)]
    Recordings(recordings::RecordingsCommand),
}

fn main() -> ExitCode {
    tollgate::identity::install_crypto_provider();
    // Usage errors print clap's message and exit 2.
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Token(command) => token::run(command),
        Command::Policy(command) => policy::run(command),
        Command::Sessions(command) => recordings::run_sessions(command),
        Command::Replay(args) => recordings::replay(&args),
        Command::Recordings(command) => recordings::run_recordings(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
