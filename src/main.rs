//! The `hal0` command line: parse arguments, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

const CONFIG_HELP: &str = hal0::config::CONFIG_HELP;

#[derive(Parser)]
#[command(
    name = "hal0",
    version,
    about = "Run local AI model servers (slots) behind one OpenAI-compatible front door"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keep the slots of hal0.toml running and serve /v1 on server.listen.
    Serve {
        #[arg(long, short, help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Where slots are declared: `file` (hal0.toml) or `kube` (Slot resources, in-cluster).
        #[arg(long, value_enum, default_value = "file")]
        source: hal0::kube::app::Source,
        #[command(flatten)]
        kube: hal0::kube::app::KubeServeArgs,
    },
    /// Print the Slot CustomResourceDefinition (the YAML in crds/slot.yaml).
    Crd,
    /// Reconcile Slot resources into Deployments and Services (runs in the cluster).
    Controller(hal0::kube::app::ControllerArgs),
    /// Check or print hal0.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage slots through the running hal0: list, status, load, unload, add, edit, remove, logs.
    Slot(hal0::cli::SlotArgs),
    /// Download hf: models into server.models_dir, list them.
    Model(hal0::cli::ModelArgs),
    /// Run a kubelet device plugin for the AMD iGPU or the XDNA NPU.
    DevicePlugin(hal0::deviceplugin::DevicePluginArgs),
    /// Install or remove hal0 as a systemd service (a user unit, or a system unit as root).
    #[command(subcommand)]
    Service(hal0::service::ServiceCommand),
    /// Print a shell completion script.
    #[command(after_help = "Install:
  bash: hal0 completions bash > ~/.local/share/bash-completion/completions/hal0
  zsh:  hal0 completions zsh > ~/.zfunc/_hal0   (with fpath+=~/.zfunc before compinit in ~/.zshrc)
  fish: hal0 completions fish > ~/.config/fish/completions/hal0.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Internal: how hal0 starts providers so they die with it.
    #[command(name = "__exec-child", hide = true)]
    ExecChild {
        #[arg(long)]
        parent: u32,
        #[arg(last = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file: one line per slot when valid, every error as PATH:LINE:COL otherwise.
    Validate {
        #[arg(long, short, help = CONFIG_HELP)]
        config: Option<PathBuf>,
    },
    /// Print the merged view (built-in defaults + file), secrets redacted.
    Show {
        #[arg(long, short, help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ExecChild { parent, argv } = &cli.command {
        let err = hal0::runtime::process::exec_child(*parent, argv);
        eprintln!("hal0: cannot start provider {:?}: {err}", argv.first());
        return ExitCode::from(127);
    }
    init_tracing();
    let result = match cli.command {
        Command::Serve {
            config,
            source: hal0::kube::app::Source::File,
            ..
        } => run_async(hal0::app::serve(hal0::config::locate(config))),
        Command::Serve { kube, .. } => run_async(hal0::kube::app::serve(kube)),
        Command::Crd => return hal0::kube::app::print_crd(),
        Command::Controller(args) => run_async(hal0::kube::app::controller(args)),
        Command::Slot(args) => return hal0::cli::slot(args),
        Command::Model(args) => return hal0::cli::model(args),
        Command::Config(ConfigCommand::Validate { config }) => {
            return hal0::config::cli::validate(&hal0::config::locate(config));
        }
        Command::Config(ConfigCommand::Show { config, json }) => {
            return hal0::config::cli::show(&hal0::config::locate(config), json);
        }
        Command::DevicePlugin(args) => run_async(hal0::deviceplugin::run(args)),
        Command::Service(cmd) => return hal0::service::run(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "hal0", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::ExecChild { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hal0: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HAL0_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
