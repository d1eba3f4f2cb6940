//! `asl`: the asymmetric loss from the command line.
//!
//! - `asl demo`: the ASL walkthrough (values, plots) and the shipped real sample on every backend.
//! - `asl eval`: loss (and gradient) of `.npy` logits and targets.
//! - `asl bench`: time per pass and bandwidth against a memory copy.
//! - `asl train`: a linear multi-label classifier trained with a backend's fused loss gradient.
//!
//! Errors are one line on stderr; the exit status is 2 for bad usage or input, 1 for a failure
//! while computing (see `fail.rs`).

mod backends;
mod bench;
mod demo;
mod eval;
mod f64ref;
mod fail;
mod npy;
mod plot;
mod train;

use std::io::Write;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

/// Fused Asymmetric Loss (ASL) kernels with timm's semantics: walkthrough, evaluation of .npy
/// files, and benchmarks, on every backend this build has.
#[derive(Debug, Parser)]
#[command(
    name = "asl",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    /// More logging: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// The ASL walkthrough: key values, PNG plots, and the shipped real sample on every backend.
    Demo(demo::Args),
    /// Loss and gradient of logits and targets stored as .npy files.
    Eval(eval::Args),
    /// Median time, elements/s and GB/s per shape, against a memory copy on the same device.
    Bench(bench::Args),
    /// Train a linear multi-label classifier on sparse data; test mAP after each epoch.
    Train(train::Args),
}

fn init_logging(verbose: u8) {
    let filter = match verbose {
        0 => "warn",
        1 => "warn,asl=info,asymloss=info",
        2 => "info,asl=debug,asymloss=debug",
        _ => "debug,asl=trace,asymloss=trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format(|buf, rec| {
            let level = rec.level();
            if level <= log::Level::Warn {
                let name = level.as_str().to_ascii_lowercase();
                writeln!(
                    buf,
                    "asl: {name}: {}",
                    fail::one_line(&rec.args().to_string())
                )
            } else {
                writeln!(buf, "[{level} {}] {}", rec.target(), rec.args())
            }
        })
        .init();
}

/// A panic is a bug, never a reaction to input: report it on one line, without a backtrace.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("asl: internal error (a bug): {}{at}", fail::one_line(&msg));
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    quiet_panics();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Train(a) => train::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("asl: error: {}", f.one_line());
            ExitCode::from(f.code)
        }
    }
}
