//! `pons call <service> <method> [JSON] [--timeout S]` and `pons publish <topic> [JSON] [--json]`:
//! an RPC or a message from the operator, through the running kernel's control socket (commands
//! `call` and `publish`, specs/protocol.md).

use std::process::ExitCode;
use std::time::Duration;

use super::args::{CallArgs, PublishArgs};
use super::{offline, output, remote};
use crate::control::api::{Request, Response};
use crate::control::client::{self, ClientError, REPLY_TIMEOUT};
use crate::home::Home;

pub fn call(home: &Home, args: &CallArgs) -> anyhow::Result<ExitCode> {
    let params = parse_json_arg("params", args.params.as_deref())?;
    let req = Request {
        cmd: "call".into(),
        service: Some(args.service.clone()),
        method: Some(args.method.clone()),
        params,
        timeout_ms: args.timeout.map(|s| s.saturating_mul(1000)),
        ..Request::default()
    };
    // The kernel answers by the RPC's deadline at the latest; without --timeout that is its
    // lifecycle.rpcTimeoutMs, read here only to know how long to wait.
    let rpc_timeout = match args.timeout {
        Some(s) => Duration::from_secs(s),
        None => configured_rpc_timeout(home),
    };
    let resp = send(home, &req, REPLY_TIMEOUT + rpc_timeout)?;
    match resp {
        Response { ok: true, data, .. } => {
            output::print_json(&data.map_or(serde_json::Value::Null, |d| d.to_value()))?;
            Ok(ExitCode::SUCCESS)
        }
        Response { error, .. } => {
            let error = error.as_deref().unwrap_or("no reason given");
            eprintln!(
                "error: {}.{}: {error}{}",
                args.service,
                args.method,
                explain(error, &args.service, rpc_timeout)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What the kernel's own error tokens mean and what to do (a provider's errors are its own).
fn explain(error: &str, service: &str, timeout: Duration) -> String {
    match error {
        "service_not_found" => format!(
            " (no module provides `{service}`; `pons status` lists the services and who provides them)"
        ),
        "module_not_ready" => format!(
            " (the provider of `{service}` is not ready; see `pons status`, or retry once it is)"
        ),
        "timeout" => format!(
            " (no answer within {} s; a longer wait: --timeout S)",
            timeout.as_secs_f64()
        ),
        _ => String::new(),
    }
}

pub fn publish(home: &Home, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let payload = parse_json_arg("payload", args.payload.as_deref())?;
    let req = Request {
        cmd: "publish".into(),
        topic: Some(args.topic.clone()),
        payload,
        ..Request::default()
    };
    let resp = send(home, &req, REPLY_TIMEOUT)?;
    let Response { ok: true, data, .. } = resp else {
        eprintln!(
            "error: {}",
            resp.error
                .as_deref()
                .unwrap_or("the kernel refused the publish")
        );
        return Ok(ExitCode::FAILURE);
    };
    let data = data.map_or(serde_json::Value::Null, |d| d.to_value());
    if args.json {
        output::print_json(&data)?;
    } else {
        let n = data["delivered"].as_u64().unwrap_or(0);
        let noun = if n == 1 { "subscriber" } else { "subscribers" };
        println!("published to {}: delivered to {n} {noun}", args.topic);
    }
    Ok(ExitCode::SUCCESS)
}

/// One request; a missing kernel is the usual "not running" error.
fn send(home: &Home, req: &Request, wait: Duration) -> anyhow::Result<Response> {
    match client::request_within(&home.socket(), req, wait, |_| {}) {
        Ok(resp) => Ok(resp),
        Err(ClientError::NotRunning(_)) => Err(remote::not_running()),
        Err(e) => Err(e.into()),
    }
}

/// The JSON argument `what` (`None` when left out); one that does not parse is an error naming
/// it.
fn parse_json_arg(what: &str, arg: Option<&str>) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(text) = arg else {
        return Ok(None);
    };
    serde_json::from_str(text).map(Some).map_err(|e| {
        anyhow::anyhow!(
            "the {what} argument {text:?} is not valid JSON ({e}); quote it for the shell, e.g. '{{\"key\":\"value\"}}' or '\"text\"'"
        )
    })
}

/// `lifecycle.rpcTimeoutMs` of config.yaml (the default when the file is missing or unreadable).
fn configured_rpc_timeout(home: &Home) -> Duration {
    let root = offline::read_config(home).unwrap_or_else(|_| serde_json::json!({}));
    let (cfg, _) = pons_reconciler::config::kernel_config(&root, &Default::default());
    Duration::from_millis(cfg.lifecycle.rpc_timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    #[test]
    fn arguments() {
        let cli =
            Cli::try_parse_from(["pons", "call", "echo", "say", "{\"a\":1}", "--timeout", "2"])
                .unwrap();
        let Command::Call(a) = cli.command else {
            panic!("not call")
        };
        assert_eq!((a.service.as_str(), a.method.as_str()), ("echo", "say"));
        assert_eq!(a.params.as_deref(), Some("{\"a\":1}"));
        assert_eq!(a.timeout, Some(2));
        assert!(Cli::try_parse_from(["pons", "call", "echo", "say", "--timeout", "0"]).is_err());
        assert!(Cli::try_parse_from(["pons", "call", "echo"]).is_err());
        let cli = Cli::try_parse_from(["pons", "publish", "t:x", "--json"]).unwrap();
        let Command::Publish(p) = cli.command else {
            panic!("not publish")
        };
        assert_eq!(p.topic, "t:x");
        assert!(p.payload.is_none() && p.json);
    }

    #[test]
    fn json_arguments() {
        assert_eq!(parse_json_arg("params", None).unwrap(), None);
        assert_eq!(
            parse_json_arg("params", Some("[1, \"x\"]")).unwrap(),
            Some(serde_json::json!([1, "x"]))
        );
        let e = parse_json_arg("payload", Some("{a:1}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the payload argument \"{a:1}\" is not valid JSON"),
            "{e}"
        );
    }
}
