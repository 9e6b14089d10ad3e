//! The local orchestrator: `serve` runs the same Router as the Lambda on 127.0.0.1, with the
//! embedded SQLite store and the task binary as a child process; `schedule fire` runs one
//! EventBridge Scheduler schedule now, against the same store and task binary; `create-table`
//! creates the DynamoDB table; `records` reads and operates a deployed (or local) API's audit
//! trail (`orchestrator::records_client`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use orchestrator::api::access::AccessArgs;
use orchestrator::api::console::ConsoleArgs;
use orchestrator::config::{DynamoArgs, IntakeArgs, LocalArgs};
use orchestrator::launch::process::ProcessLauncher;
use orchestrator::records_client::{self, RecordsArgs};
use orchestrator::{AppState, app, recovery, telemetry};
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
        #[command(flatten)]
        console: ConsoleArgs,
        #[command(flatten)]
        notify: Box<orchestrator::notifications::NotifyConfig>,
    },
    /// Read and operate the audit trail of a deployed or local API (list, show, redispatch, redact).
    Records(Box<RecordsArgs>),
    /// Create the DynamoDB table and its indexes (honours AWS_ENDPOINT_URL, e.g. for moto).
    CreateTable {
        #[command(flatten)]
        dynamo: DynamoArgs,
    },
    /// EventBridge Scheduler schedules, locally.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// Run schedule NAME once, as the scheduler would: its input through the rules, recorded in
    /// DATA_DIR's store, its task started (prints the record id and status as JSON).
    Fire {
        /// The schedule's name, as declared in SCHEDULES.
        name: String,
        /// The run's execution id (default: a new one). The same id twice is one run.
        #[arg(long)]
        execution_id: Option<String>,
        /// The schedules: a JSON list of {name, expression, input} (template.yaml declares the
        /// same on AWS).
        #[arg(long, env = "SCHEDULES", default_value = "")]
        schedules: String,
        #[command(flatten)]
        local: LocalArgs,
        #[command(flatten)]
        intake: Box<IntakeArgs>,
    },
}

fn default_task_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate this program")?;
    Ok(me.with_file_name(format!("gitops-task{}", std::env::consts::EXE_SUFFIX)))
}

/// The embedded store in DATA_DIR and the task binary as a child process.
fn local_adapters(local: &LocalArgs) -> anyhow::Result<(SqliteStore, ProcessLauncher, PathBuf)> {
    let data_dir = std::path::absolute(&local.data_dir).context("DATA_DIR")?;
    let db = SqliteStore::file_in(&data_dir);
    let store = SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let task_binary = match local.task_binary.clone() {
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
    Ok((store, launcher, db))
}

async fn fire(
    name: &str,
    execution_id: Option<&str>,
    schedules: &str,
    local: LocalArgs,
    intake: IntakeArgs,
) -> anyhow::Result<()> {
    let schedules = orchestrator::intake::events::parse_schedules(schedules)
        .map_err(|e| anyhow::anyhow!("SCHEDULES: {e}"))?;
    let settings = intake.settings().map_err(anyhow::Error::msg)?;
    let Some(rules) = settings.port.rules.as_deref() else {
        bail!("RULES_FILE or RULES must be set: a schedule run goes through the rules");
    };
    let (store, launcher, _) = local_adapters(&local)?;
    let report = orchestrator::events::fire(
        &store,
        &launcher,
        settings.retry,
        rules,
        &schedules,
        name,
        execution_id,
    )
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn serve(
    local: LocalArgs,
    intake: IntakeArgs,
    access: AccessArgs,
    console: ConsoleArgs,
    notify: &orchestrator::notifications::NotifyConfig,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = intake.settings().map_err(anyhow::Error::msg)?;
    let access = access
        .settings(settings.token.as_ref())
        .map_err(anyhow::Error::msg)?;
    let (store, launcher, db) = local_adapters(&local)?;
    let task_binary = launcher.program().to_owned();
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
    let recovery = local.recovery.policy(settings.retry);
    // The server's transitions (dispatch, the sweeper) are notified from here; the task
    // processes read the same settings from the environment they inherit.
    let store = notify
        .store(Arc::new(store))
        .await
        .map_err(anyhow::Error::msg)?;
    let state = AppState {
        store,
        launcher: Arc::new(launcher),
        intake: Arc::new(settings),
        access: Arc::new(access),
        console: Arc::new(console.settings()),
    };
    // The same sweeper the `recovery` Lambda runs on a schedule.
    if local.recovery_interval_secs > 0 {
        tokio::spawn(recovery::run_every(
            state.store.clone(),
            state.launcher.clone(),
            recovery,
            std::time::Duration::from_secs(local.recovery_interval_secs),
        ));
    }
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
            console,
            notify,
        } => serve(local, *intake, access, console, &notify).await,
        Command::Records(args) => {
            let out = records_client::run(*args, |k| std::env::var(k).ok()).await?;
            print!("{out}");
            Ok(())
        }
        Command::Schedule {
            command:
                ScheduleCommand::Fire {
                    name,
                    execution_id,
                    schedules,
                    local,
                    intake,
                },
        } => fire(&name, execution_id.as_deref(), &schedules, local, *intake).await,
        Command::CreateTable { dynamo } => {
            let aws = orchestrator_clients::aws::config().await;
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), dynamo.names());
            store.create_table().await?;
            println!("created table {}", dynamo.table_name);
            Ok(())
        }
    }
}
