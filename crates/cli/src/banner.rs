//! The start-up banner: where everything listens, on stdout, so a newcomer (and the test
//! harness) can see it at a glance.

use std::io::Write;
use wayfinder_server::{Agent, AgentConfig, DataDir};

/// Prints the banner and flushes, so readers of a pipe see it immediately.
pub fn print(config: &AgentConfig, agent: &Agent) {
    let storage = match (&config.data_dir, config.provider_only) {
        (_, true) => format!(
            "{} (temporary: --provider-only keeps no state)",
            agent.data_dir().display()
        ),
        (DataDir::Temporary, false) => format!("{} (temporary: --dev)", agent.data_dir().display()),
        (DataDir::Path(_), false) => format!("{} (durable)", agent.data_dir().display()),
    };
    let config_dir = config.config_dir.as_ref().map_or_else(
        || "none".to_owned(),
        |dir| format!("{} (SIGHUP reloads)", dir.display()),
    );
    let scripts = match (
        config.enable_script_checks,
        config.enable_local_script_checks,
    ) {
        (true, _) => "enabled (API and config files)",
        (false, true) => "enabled for config files only",
        (false, false) => "disabled",
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Wayfinder agent {version} running\n  \
           node:          {node} ({dc})\n  \
           data dir:      {storage}\n  \
           config dir:    {config_dir}\n  \
           script checks: {scripts}\n  \
           HTTP API:      {scheme}://{addr}{extras}{gateway}{dns}",
        version = env!("CARGO_PKG_VERSION"),
        node = config.node_name,
        dc = config.datacenter,
        scheme = match config.http_tls.is_some() {
            true => "https",
            false => "http",
        },
        addr = agent.http_addr(),
        extras = extras(config),
        gateway = agent
            .gateway_addr()
            .map(|addr| format!(
                "\n  gateway:       {}://{addr}",
                if config.gateway.tls.is_some() {
                    "https"
                } else {
                    "http"
                }
            ))
            .unwrap_or_default(),
        dns = agent
            .dns_addr()
            .map(|addr| format!("\n  DNS:           {addr} (UDP and TCP)"))
            .unwrap_or_default(),
    );
    let _ = out.flush();
}

/// Banner lines for the optional roles, empty when none is on.
fn extras(config: &AgentConfig) -> String {
    let mut lines = String::new();
    if let Some(ca) = config
        .http_tls
        .as_ref()
        .and_then(|tls| tls.client_ca.as_ref())
    {
        lines.push_str(&format!(
            "\n  client certs:  required, signed by {}",
            ca.display()
        ));
    }
    if let Some(cache) = &config.cache {
        let role = if config.provider_only {
            "read by this provider"
        } else {
            "pushed on every change"
        };
        lines.push_str(&format!("\n  cache:         {cache} ({role})"));
    }
    if let Some(upstream) = &config.upstream_consul {
        lines.push_str(&format!(
            "\n  upstream:      {upstream} (mirrored read-only)"
        ));
    }
    lines
}
