//! The task binary: thin CLI over the `gitops_task` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orchestrator_core::LaunchContract;
use orchestrator_core::contract::JobKind;

/// Gitops task: runs one job of the orchestrator.
///
/// With no subcommand (or `run`) it reads the job from the launch contract (ORCH_* environment
/// variables set by the launcher) and carries it out.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the job from the launch contract (the default): open or update the gitops pull
    /// request, or run a Port rule's remediation actions; report to the record, print a one-line
    /// JSON summary on stdout.
    Run(Box<RunCommand>),
    /// Dry run of a gitops job, by hand: clone the gitops repository, set the image in the
    /// overlay, run the preflight, and print the diff and the images the built overlay runs
    /// before and after. Nothing is committed or pushed, no pull request is opened, no record is
    /// written. Exit 0 when planned, 1 when the job cannot be planned (the reason is printed).
    ///
    /// Example: gitops-task plan --repo-url https://github.com/acme/gitops.git
    /// --service shop-api --image acme/shop-api --environment prod --tag 8f59df9
    Plan(Box<gitops_task::gitops::plan::PlanArgs>),
    /// Edit one kustomization file exactly like `kustomize edit set image`, keeping every byte
    /// outside its `images:` block. No git, no checks: operators use it by hand.
    SetImage {
        /// The kustomization file to edit.
        file: PathBuf,
        /// `kustomize edit set image` arguments, e.g. `nginx=registry/nginx:1.2`.
        #[arg(required = false, allow_hyphen_values = false)]
        args: Vec<String>,
    },
}

/// Settings of `run`: the gitops job's (store included) and the remediation actions'.
#[derive(Debug, clap::Args)]
struct RunCommand {
    #[command(flatten)]
    gitops: gitops_task::gitops::RunArgs,
    #[command(flatten)]
    remediation: gitops_task::remediation::RemediationArgs,
    #[command(flatten)]
    notify: orchestrator_notify::NotifyArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        // No subcommand means `run`: parse again so its settings come from the environment.
        None => {
            let argv0 = std::env::args_os()
                .next()
                .unwrap_or_else(|| "gitops-task".into());
            match Cli::try_parse_from([argv0, "run".into()]) {
                Ok(Cli {
                    command: Some(c), ..
                }) => c,
                Ok(_) => return ExitCode::from(2),
                Err(e) => e.exit(),
            }
        }
    };
    match command {
        Command::Plan(args) => {
            orchestrator_core::telemetry::init(false);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("Error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(gitops_task::gitops::plan::plan(&args)) {
                Err(e) => {
                    eprintln!("Error: {e}");
                    ExitCode::from(2)
                }
                Ok(outcome) => {
                    if args.json {
                        println!(
                            "{}",
                            serde_json::to_string(&outcome).unwrap_or_else(|e| format!(
                                "{{\"outcome\":\"failed\",\"reason\":\"{e}\"}}"
                            ))
                        );
                    } else {
                        print!("{}", gitops_task::gitops::plan::human(&outcome));
                    }
                    if gitops_task::gitops::plan::ok(&outcome) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
        Command::SetImage { file, args } => {
            match kustomize_set_image::set_image_file(&file, &args) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            // JSON lines on stderr, with the same payload filter as the functions.
            orchestrator_core::telemetry::init(true);
            // Before any child starts: a remediation command must not read the secrets in this
            // process's environment or memory through /proc, and what it leaves running comes
            // back to the task, which kills it when the step ends. No protection, no run.
            let hardened = gitops_task::remediation::exec::make_undumpable()
                .and_then(|()| gitops_task::remediation::exec::adopt_orphans());
            if let Err(e) = hardened {
                tracing::error!(error = %e, "cannot isolate the task from its commands");
                return ExitCode::FAILURE;
            }
            let contract = match LaunchContract::from_env() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the launch contract");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            // Notifications never stop the work: settings it cannot use are logged, and the job
            // runs without them.
            let notify = match args.notify.notifier_from_env() {
                Ok(n) => n.map(|n| std::sync::Arc::new(n) as gitops_task::Notifier),
                Err(e) => {
                    tracing::error!(error = %e, "notifications are off: their settings cannot be used");
                    None
                }
            };
            let job = async {
                match contract.kind {
                    JobKind::GitopsPr => {
                        // Reports to a Port run use the remediation's Port settings; a bad one
                        // leaves the run unreported, never the pull request undone.
                        let port = gitops_task::remediation::Settings::from_args(
                            &args.remediation,
                            args.gitops.record_base_url.as_deref(),
                        )
                        .map(|s| s.port_run_settings())
                        .unwrap_or_default();
                        gitops_task::gitops::run(&contract, &args.gitops, &port, notify).await
                    }
                    JobKind::Remediation => {
                        gitops_task::remediation::run(
                            &contract,
                            &args.gitops,
                            &args.remediation,
                            notify,
                        )
                        .await
                    }
                }
            };
            match rt.block_on(job) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "job failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
