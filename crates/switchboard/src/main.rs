//! The `switchboard` binary: parses the command line and runs the server or an admin command.

use clap::Parser;
use switchboard::cli::{Cli, Command, ConfigCommand, KeysCommand, ServeArgs};
use switchboard::{Settings, telemetry};
use utoipa::OpenApi;

/// mimalloc instead of the system allocator: the request path allocates small, short-lived
/// values on every thread, where glibc's malloc spends a tenth of the server's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let settings = Settings::load(args.config.as_deref(), &args.flags())?;
    settings.validate()?;
    Ok(settings)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = settings(&args)?;
            let _logs = telemetry::init_logs(&settings.log_format);
            let app = switchboard::build(&settings).await?;
            app.run_until(shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Migrate(args) => {
            let settings = settings(&args)?;
            let _logs = telemetry::init_logs(&settings.log_format);
            switchboard::migrate(&settings).await?;
            tracing::info!("database is up to date");
        }
        Command::Openapi => {
            println!("{}", switchboard_api::ApiDoc::openapi().to_pretty_json()?);
        }
        Command::Admin(args) => switchboard::cli::run_admin(args).await?,
        Command::Send(args) => switchboard::send::run(*args).await?,
        Command::Keys(KeysCommand::Rotate { settings: args, grace_hours, stage }) => {
            let settings = settings(&args)?;
            print!("{}", switchboard::keys::rotate(&settings, grace_hours, stage).await?);
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let layered = Settings::layered(args.config.as_deref(), &args.flags())?;
            print!("{}", switchboard::settings::show(&layered));
            let settings = layered.settings()?;
            settings.validate()?;
            switchboard::check_upstreams(&settings)?;
            eprintln!("the settings are valid");
        }
        Command::Backup(args) => {
            let settings = settings(&args.settings)?;
            print!("{}", switchboard::backup::backup(&settings, &args.to, args.with_keys).await?);
        }
        Command::Restore(args) => {
            let settings = settings(&args.settings)?;
            print!("{}", switchboard::backup::restore(&settings, &args.from, args.keys.as_deref()).await?);
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
