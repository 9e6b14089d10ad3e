//! The local orchestrator: `serve` runs the same Router as the Lambda on 127.0.0.1, with the
//! embedded SQLite store and the task binary as a child process; `create-table` creates the
//! DynamoDB table; `records` reads and operates a deployed (or local) API's audit trail
//! (`orchestrator::records_client`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use orchestrator::api::access::AccessArgs;
use orchestrator::config::{DynamoArgs, IntakeArgs, LocalArgs};
use orchestrator::launch::process::ProcessLauncher;
use orchestrator::records_client::{self, RecordsArgs};
use orchestrator::{AppState, app, telemetry};
use orchestrator_core::store::dynamodb::DynamoStore;
use orchestrator_core::store::sqlite::SqliteStore;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Gitops orchestrator: local server and operator commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API on localhost with the embedded store, running the task binary locally.
    Serve {
        #[command(flatten)]
        local: LocalArgs,
        #[command(flatten)]
        intake: Box<IntakeArgs>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Read and operate the audit trail of a deployed or local API (list, show, redispatch, redact).
    Records(Box<RecordsArgs>),
    /// Create the DynamoDB table and its indexes (honours AWS_ENDPOINT_URL, e.g. for moto).
    CreateTable {
        #[command(flatten)]
        dynamo: DynamoArgs,
    },
}

fn default_task_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate this program")?;
    Ok(me.with_file_name(format!("gitops-task{}", std::env::consts::EXE_SUFFIX)))
}

async fn serve(local: LocalArgs, intake: IntakeArgs, access: AccessArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = intake.settings().map_err(anyhow::Error::msg)?;
    let access = access
        .settings(settings.token.as_ref())
        .map_err(anyhow::Error::msg)?;
    let data_dir = std::path::absolute(&local.data_dir).context("DATA_DIR")?;
    let db = SqliteStore::file_in(&data_dir);
    let store = SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let task_binary = match local.task_binary {
        Some(p) => p,
        None => default_task_binary()?,
    };
    if !task_binary.exists() {
        bail!(
            "task binary {} not found: build it with `cargo build -p gitops-task` or set TASK_BINARY",
            task_binary.display()
        );
    }
    // The task writes its outcome to the same embedded store.
    let launcher = ProcessLauncher::new(
        task_binary.clone(),
        data_dir.join("tasks"),
        vec![
            ("ORCH_STORE".into(), "sqlite".into()),
            ("DATA_DIR".into(), data_dir.display().to_string()),
        ],
    );
    if settings.token.is_none() {
        if !local.bind.is_loopback() {
            bail!(
                "BIND_ADDRESS {} is not a loopback address and no INTAKE_TOKEN is set: the server \
                 would accept unauthenticated requests from the network; set INTAKE_TOKEN, or \
                 keep the default 127.0.0.1",
                local.bind
            );
        }
        tracing::warn!("no INTAKE_TOKEN set: the local server accepts unauthenticated requests");
    }
    let state = AppState {
        store: Arc::new(store),
        launcher: Arc::new(launcher),
        intake: Arc::new(settings),
        access: Arc::new(access),
    };
    let listener = tokio::net::TcpListener::bind((local.bind, local.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", local.bind, local.port))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    tracing::info!(
        %addr,
        store = %db.display(),
        task_binary = %task_binary.display(),
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "local orchestrator ready"
    );
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server failed")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(telemetry::wants_json());
    match cli.command {
        Command::Serve {
            local,
            intake,
            access,
        } => serve(local, *intake, access).await,
        Command::Records(args) => {
            let out = records_client::run(*args, |k| std::env::var(k).ok()).await?;
            print!("{out}");
            Ok(())
        }
        Command::CreateTable { dynamo } => {
            let aws = aws_config::load_from_env().await;
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), dynamo.names());
            store.create_table().await?;
            println!("created table {}", dynamo.table_name);
            Ok(())
        }
    }
}
