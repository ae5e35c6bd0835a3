//! The `portgate` binary: parse flags, load and validate settings, run the server.

use clap::Parser;
use pingora::server::UnixShutdownSignalWatch;
use portgate::{build_server, settings::SettingsError, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a proxied chat request makes many small allocations,
/// and glibc's malloc/free were a large share of its instructions (see `docs/performance.md`).
/// Built with `no_thp`: by default mimalloc asks for transparent huge pages on its arenas
/// (`madvise`), and where THP is on for `madvise` (Debian's default) memory then becomes
/// resident in 2 MiB steps, doubling the idle footprint and the memory per open stream.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Portkey-compatible AI gateway sidecar.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Settings file (YAML). Without it the built-in defaults are used.
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Proxy listen address (overrides the file and PORTGATE_LISTEN).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin listen address (overrides the file and PORTGATE_ADMIN_LISTEN).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Validate the settings, print the effective settings and exit.
    #[arg(long)]
    check: bool,
}

/// Commands besides serving (without one, `portgate` serves).
#[derive(clap::Subcommand, Debug, Clone)]
enum Command {
    /// Datasets from the log store's requests and feedback.
    Dataset {
        #[command(subcommand)]
        command: portgate::commands::dataset::DatasetCommand,
    },
    /// Fine-tuning jobs on a virtual key's provider, with the gateway's own keys.
    Finetune {
        #[command(subcommand)]
        command: portgate::commands::finetune::FinetuneCommand,
    },
}

fn load(cli: &Cli) -> Result<Settings, SettingsError> {
    let mut settings = Settings::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(l) = &cli.listen {
        settings.listen = l.clone();
    }
    if let Some(l) = &cli.admin_listen {
        settings.admin_listen = l.clone();
    }
    settings.validate()?;
    Ok(settings)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portgate: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(command) = &cli.command {
        let done = match command {
            Command::Dataset { command } => portgate::commands::dataset::run(&settings, command),
            Command::Finetune { command } => portgate::commands::finetune::run(&settings, command),
        };
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portgate: {e}");
                ExitCode::from(1)
            }
        };
    }
    if cli.check {
        let notes = match portgate::state::check_settings(&settings) {
            Ok(notes) => notes,
            Err(e) => {
                eprintln!("portgate: {e}");
                return ExitCode::from(2);
            }
        };
        // Names and sources only: virtual keys show where their key comes from, configs'
        // credential fields and gateway key digests are not shown.
        println!("{}", settings.check_report());
        // What the settings lead to (where prices come from), as YAML comments.
        for note in notes {
            println!("# {note}");
        }
        return ExitCode::SUCCESS;
    }
    portgate::telemetry::init(&settings.log);
    tracing::info!(
        listen = %settings.listen,
        admin_listen = %settings.admin_listen,
        "portgate starting"
    );
    // The settings are loaded again, the same way, when their file changes or on SIGHUP.
    let reload = portgate::reload::Reload {
        watch: cli.config.clone(),
        loader: Box::new({
            let cli = cli.clone();
            move || load(&cli)
        }),
    };
    match build_server(settings, Some(reload)) {
        Ok(gateway) => {
            // SIGTERM drains and returns here as soon as no request is in flight (see
            // `shutdown.rs`); SIGINT returns at once.
            gateway.run(UnixShutdownSignalWatch);
            tracing::info!("portgate stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portgate: {e}");
            ExitCode::from(2)
        }
    }
}
