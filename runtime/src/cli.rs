//! The `sluice` command line: `run`, `check` and `localrun`, as the README
//! shows them (docs/architecture.md places it among the layers).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// sluice: a Pulsar IO connector runtime.
///
/// Runs connectors that move data between databases and Apache Pulsar topics
/// with a chosen delivery guarantee, from the same YAML that
/// `pulsar-admin sources|sinks localrun` takes.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every connector in a pipeline file until SIGINT or SIGTERM.
    Run(ConfigArg),
    /// Run one Pulsar IO source or sink config, as `pulsar-admin ... localrun` takes it.
    Localrun(LocalrunArgs),
    /// Parse and check a pipeline file, or a Pulsar IO source or sink
    /// config; no network or database I/O.
    Validate(CheckArgs),
    /// Preflight: connect to Pulsar and each connector's system and report
    /// settings that would break the run, for a pipeline file or a Pulsar IO
    /// source or sink config.
    Check(CheckArgs),
    /// Show what a running sluice is doing: each connector's state, and a
    /// snapshot's progress per table.
    Status(StatusArgs),
}

/// `sluice status`: where the running sluice's HTTP endpoints are.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("where").required(true).args(["config", "url"])))]
pub struct StatusArgs {
    /// The pipeline file the running sluice was started with: its
    /// `http.listen` is asked.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Or the address of its HTTP endpoints (`http://127.0.0.1:9464`);
    /// given again, the processes of one deployment (an active source and
    /// its standbys, a sink's replicas), each shown under its address.
    #[arg(long, value_name = "URL")]
    pub url: Vec<String>,
    /// Show it again every this many seconds, until interrupted.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
}

/// A pipeline file.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The pipeline file (YAML): `pulsar`, `http`, `sources` and `sinks`.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

/// `sluice localrun`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("connector")
        .required(true)
        .args(["source_config_file", "sink_config_file"])
))]
pub struct LocalrunArgs {
    /// The connector's file and how to reach the broker.
    #[command(flatten)]
    pub connector: ConnectorFileArgs,
}

/// `sluice validate` and `sluice check`: a pipeline file, or a connector's
/// file as `sluice localrun` takes it.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("file")
        .required(true)
        .args(["config", "source_config_file", "sink_config_file"])
))]
pub struct CheckArgs {
    /// The pipeline file (YAML): `pulsar`, `http`, `sources` and `sinks`.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Or a connector's file and how to reach the broker.
    #[command(flatten)]
    pub connector: ConnectorFileArgs,
}

/// A Pulsar IO source or sink config, with the flags of
/// `pulsar-admin ... localrun` that say how to reach the broker.
#[derive(Debug, Args)]
pub struct ConnectorFileArgs {
    /// A Pulsar IO source config (SourceConfig fields).
    #[arg(long, value_name = "FILE")]
    pub source_config_file: Option<PathBuf>,
    /// A Pulsar IO sink config (SinkConfig fields).
    #[arg(long, value_name = "FILE")]
    pub sink_config_file: Option<PathBuf>,
    /// The broker's binary protocol URL.
    #[arg(long, value_name = "URL", default_value = "pulsar://localhost:6650")]
    pub broker_service_url: String,
    /// The broker's admin REST URL.
    #[arg(long, value_name = "URL")]
    pub web_service_url: Option<String>,
    /// The authentication plugin, as a Java class name
    /// (org.apache.pulsar.client.impl.auth.AuthenticationToken,
    /// ...oauth2.AuthenticationOAuth2).
    #[arg(long, value_name = "CLASS")]
    pub client_auth_plugin: Option<String>,
    /// Its parameters (`token:...`, `file:///path`, or the OAuth2 JSON).
    #[arg(long, value_name = "PARAMS")]
    pub client_auth_params: Option<String>,
    /// Connect with TLS: the broker URL must be pulsar+ssl://.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub use_tls: Option<bool>,
    /// Accept any server certificate. Insecure.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_allow_insecure: Option<bool>,
    /// Check that the server's certificate names its host (the default).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_hostname_verification: Option<bool>,
    /// CA certificates (PEM) that the broker's and the admin API's
    /// certificates chain to.
    #[arg(long, value_name = "FILE")]
    pub tls_trust_cert_path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_and_validate_take_a_pipeline_or_one_connector_file() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        let Ok(Command::Check(a)) = parse(&["sluice", "check", "--config", "p.yaml"]) else {
            panic!("a pipeline file")
        };
        assert_eq!(a.config, Some(PathBuf::from("p.yaml")));
        let Ok(Command::Validate(a)) = parse(&[
            "sluice",
            "validate",
            "--source-config-file",
            "s.yaml",
            "--broker-service-url",
            "pulsar://b:6650",
        ]) else {
            panic!("a source file")
        };
        assert_eq!(
            a.connector.source_config_file,
            Some(PathBuf::from("s.yaml"))
        );
        assert_eq!(a.connector.broker_service_url, "pulsar://b:6650");
        assert!(parse(&["sluice", "check"]).is_err(), "a file is required");
        assert!(
            parse(&[
                "sluice",
                "check",
                "-c",
                "p.yaml",
                "--sink-config-file",
                "k.yaml"
            ])
            .is_err(),
            "one file at a time"
        );
        assert!(parse(&["sluice", "localrun", "--config", "p.yaml"]).is_err());
    }
}
