//! The `sluice` binary: parses the command line and hands off to the runtime.
//!
//! Exit codes: 0 ok, 1 a runtime failure, 2 bad usage or bad config.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sluice_connectors::Severity;
use sluice_runtime::cli::{Cli, Command, ConnectorFileArgs};
use sluice_runtime::config::{
    self, ConfigErrors, ConnectorFileKind, Guarantee, Loaded, LocalrunOverrides,
};
use sluice_runtime::{engine, http, pulsar};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    sluice_connectors::install_tls_provider();
    if let Command::Status(a) = &cli.command {
        return status(a);
    }
    let loaded = match &cli.command {
        Command::Status(_) => unreachable!("answered above"),
        Command::Run(a) => config::load_pipeline(&a.config),
        Command::Validate(a) | Command::Check(a) => match &a.config {
            Some(path) => config::load_pipeline(path),
            None => load_connector_file(&a.connector),
        },
        Command::Localrun(a) => load_connector_file(&a.connector),
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(errors) => return config_failure(&errors),
    };
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Validate(_) => {
            let p = &loaded.pipeline;
            println!(
                "ok: {} source(s), {} sink(s)",
                p.sources.len(),
                p.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Command::Check(_) => runtime.block_on(check(loaded)),
        Command::Status(_) => unreachable!("answered above"),
        Command::Run(_) | Command::Localrun(_) => runtime.block_on(run(loaded)),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colour(
            std::env::var("SLUICE_LOG_COLOR").ok().as_deref(),
            std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ))
        .init();
}

/// Whether log lines carry ANSI colour: `SLUICE_LOG_COLOR` `always` or
/// `never` decides; otherwise only on a terminal, and not when `NO_COLOR`
/// is set. Log collectors reading a pipe or a file get plain text.
fn log_colour(setting: Option<&str>, no_color: bool, terminal: bool) -> bool {
    match setting {
        Some("always") => true,
        Some("never") => false,
        _ => terminal && !no_color,
    }
}

/// `sluice status`: ask each running sluice's `/connectors` and show it,
/// once or every `--watch` seconds. Once, a process that does not answer
/// makes the exit status 1; the others are shown all the same.
fn status(a: &sluice_runtime::cli::StatusArgs) -> ExitCode {
    let bases: Vec<String> = match &a.config {
        _ if !a.url.is_empty() => a
            .url
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect(),
        Some(path) => match config::load_pipeline(path) {
            Ok(loaded) => match loaded.pipeline.http {
                Some(addr) => vec![format!("http://{addr}")],
                None => {
                    eprintln!("error: {} sets no http.listen to ask", path.display());
                    return ExitCode::from(2);
                }
            },
            Err(errors) => return config_failure(&errors),
        },
        None => unreachable!("clap requires one"),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    loop {
        let answers: Vec<(String, Result<serde_json::Value, String>)> = bases
            .iter()
            .map(|base| (base.clone(), connectors_of(&agent, base)))
            .collect();
        if a.watch.is_some() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            // Clear the screen, and start at its top.
            print!("\x1b[2J\x1b[H");
        }
        let (text, unanswered) = match answers.as_slice() {
            [(base, Err(e))] => {
                eprintln!("error: cannot read {base}/connectors: {e}");
                (String::new(), true)
            }
            _ => sluice_runtime::status::render_processes(&answers),
        };
        print!("{text}");
        let Some(every) = a.watch else {
            return if unanswered {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        };
        std::thread::sleep(std::time::Duration::from_secs(every.max(1)));
    }
}

/// What a running sluice's `/connectors` answers.
fn connectors_of(agent: &ureq::Agent, base: &str) -> Result<serde_json::Value, String> {
    let mut r = agent
        .get(format!("{base}/connectors"))
        .call()
        .map_err(|e| e.to_string())?;
    let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// A connector's file, with the broker settings its flags give.
fn load_connector_file(a: &ConnectorFileArgs) -> Result<Loaded, ConfigErrors> {
    let overrides = LocalrunOverrides {
        broker_service_url: Some(a.broker_service_url.clone()),
        web_service_url: a.web_service_url.clone(),
        auth_plugin: a.client_auth_plugin.clone(),
        auth_params: a.client_auth_params.clone(),
        use_tls: a.use_tls.unwrap_or(false),
        tls_trust_cert_path: a.tls_trust_cert_path.clone(),
        tls_allow_insecure: a.tls_allow_insecure.unwrap_or(false),
        tls_hostname_verification: a.tls_hostname_verification,
    };
    match (&a.source_config_file, &a.sink_config_file) {
        (Some(f), _) => config::load_connector_file(f, ConnectorFileKind::Source, &overrides),
        (None, Some(f)) => config::load_connector_file(f, ConnectorFileKind::Sink, &overrides),
        (None, None) => unreachable!("clap requires a file"),
    }
}

fn config_failure(errors: &ConfigErrors) -> ExitCode {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    ExitCode::from(2)
}

/// First SIGINT or SIGTERM: drain and stop. Second: exit at once.
fn watch_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        for n in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                info!("stopping: draining in-flight work (a second signal exits at once)");
                shutdown.cancel();
            } else {
                warn!("second signal: exiting without draining");
                std::process::exit(130);
            }
        }
    });
}

async fn run(loaded: Loaded) -> ExitCode {
    let pipeline = loaded.pipeline;
    for (what, path) in pipeline.pulsar.secret_files() {
        if let Some(w) = sluice_connectors::secret_files::too_open(what, path) {
            warn!("{w}");
        }
    }
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone());
    let instances = engine::instances(&pipeline);
    let statuses: Vec<_> = instances.iter().map(|i| Arc::clone(i.status())).collect();
    let server = match pipeline.http {
        Some(addr) => match http::bind(addr).await {
            Ok(listener) => {
                info!(listen = %addr, "http endpoints ready");
                Some(tokio::spawn(http::serve(
                    listener,
                    Arc::new(statuses.clone()),
                    shutdown.clone(),
                )))
            }
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    info!(
        sources = pipeline.sources.len(),
        sinks = pipeline.sinks.len(),
        "sluice running"
    );
    engine::run(&pipeline.pulsar, instances, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    info!("sluice stopped");
    ExitCode::SUCCESS
}

async fn check(loaded: Loaded) -> ExitCode {
    let pipeline = loaded.pipeline;
    let mut findings: Vec<(String, Severity, String)> = pipeline
        .pulsar
        .secret_files()
        .into_iter()
        .filter_map(|(what, path)| sluice_connectors::secret_files::too_open(what, path))
        .map(|w| ("pulsar".to_owned(), Severity::Warning, w))
        .collect();
    let client = match pulsar::connect(&pipeline.pulsar, pulsar::Reading::Direct).await {
        Ok(c) => {
            println!("ok    pulsar: connected to {}", pipeline.pulsar.service_url);
            Some(c)
        }
        Err(e) => {
            findings.push((
                "pulsar".into(),
                Severity::Error,
                format!("cannot connect: {e}"),
            ));
            None
        }
    };
    for def in pipeline
        .sources
        .iter()
        .filter(|d| d.guarantee == Guarantee::EffectivelyOnce)
    {
        let Some(client) = &client else { break };
        if let Err(e) = client.check_transactions().await {
            let text = e.to_string();
            let message = if text.contains("connect to the transaction coordinator")
                || text.contains("authenticate")
            {
                // Not the broker's setting: the connection itself failed.
                format!("EFFECTIVELY_ONCE needs transactions: {e}")
            } else {
                format!(
                    "EFFECTIVELY_ONCE needs transactions, which the broker refused ({e}): \
                     set transactionCoordinatorEnabled=true and initialize the coordinator, and \
                     grant the role consume on persistent://pulsar/system/transaction_coordinator_assign"
                )
            };
            findings.push((def.name.clone(), Severity::Error, message));
        }
        let namespace = format!("{}/{}", def.tenant, def.namespace);
        let warning = match client.deduplication(&namespace).await {
            Ok(Some(true)) => None,
            Ok(Some(false)) => Some(format!(
                "deduplication is off for {namespace}: a resend after a reconnect can put a record on \
                 a topic twice; turn it on: pulsar-admin namespaces set-deduplication {namespace} --enable"
            )),
            Ok(None) => Some(format!(
                "set pulsar.webServiceUrl so that check can verify that {namespace} deduplicates messages, \
                 which EFFECTIVELY_ONCE needs against resends after a reconnect"
            )),
            Err(e) => Some(format!(
                "whether {namespace} deduplicates messages is unknown: {e}"
            )),
        };
        if let Some(message) = warning {
            findings.push((def.name.clone(), Severity::Warning, message));
        }
    }
    for def in &pipeline.sources {
        let found = def.spec.preflight().await;
        findings.extend(
            found
                .into_iter()
                .map(|f| (def.name.clone(), f.severity, f.message)),
        );
    }
    for def in &pipeline.sinks {
        let found = def.spec.preflight().await;
        findings.extend(
            found
                .into_iter()
                .map(|f| (def.name.clone(), f.severity, f.message)),
        );
    }
    for (who, severity, message) in &findings {
        let tag = if *severity == Severity::Error {
            "error"
        } else {
            "warn "
        };
        println!("{tag} {who}: {message}");
    }
    if findings.iter().any(|(_, s, _)| *s == Severity::Error) {
        ExitCode::from(1)
    } else {
        println!("ok: no problems found");
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::log_colour;

    #[test]
    fn colour_only_on_a_terminal_unless_asked() {
        assert!(log_colour(None, false, true));
        assert!(!log_colour(None, false, false));
        assert!(!log_colour(None, true, true));
        assert!(!log_colour(Some("auto"), false, false));
        assert!(log_colour(Some("always"), true, false));
        assert!(!log_colour(Some("never"), false, true));
    }
}
