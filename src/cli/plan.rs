//! `pons plan [--json] [--detailed-exitcode]`: the actions the next pass would take, from the
//! running kernel, or without one against an empty system.

use std::process::ExitCode;

use super::args::PlanArgs;
use super::{offline, output, remote};
use crate::control::api::PlanReply;
use crate::home::Home;

pub fn run(home: &Home, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let reply = match remote::call(home, &remote::cmd("plan"), |_| {})? {
        Some(data) => serde_json::from_value::<PlanReply>(data).map_err(|e| {
            anyhow::anyhow!("the kernel's `plan` answer does not match this pons version: {e}")
        })?,
        None => offline_reply(home),
    };
    if args.json {
        output::print_json(&reply.json)?;
    } else {
        // Without a kernel the rendered plan itself says so.
        if super::colour::enabled() {
            print!("{}", super::colour::plan(&reply.text));
        } else {
            print!("{}", reply.text);
        }
        if !reply.text.ends_with('\n') {
            println!();
        }
    }
    let invalid = reply.json["errors"]
        .as_array()
        .is_some_and(|e| !e.is_empty());
    Ok(exit_code(invalid, reply.changes, args.detailed_exitcode))
}

/// The plan computed from the files, as the kernel would answer it.
fn offline_reply(home: &Home) -> PlanReply {
    let desired = offline::desired(home);
    let plan = offline::offline_plan(&desired);
    PlanReply {
        json: offline::plan_json(&plan, false),
        text: offline::plan_text(&plan, &desired, false),
        changes: offline::plan_has_changes(&plan),
    }
}

/// 1 when an input is invalid (the errors are in the plan), else 0 when converged (or without
/// --detailed-exitcode), 2 when changes are pending.
fn exit_code(invalid: bool, changes: bool, detailed: bool) -> ExitCode {
    if invalid {
        ExitCode::FAILURE
    } else if changes && detailed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(false, true, true), ExitCode::from(2));
        assert_eq!(exit_code(false, true, false), ExitCode::SUCCESS);
        assert_eq!(exit_code(false, false, true), ExitCode::SUCCESS);
        assert_eq!(exit_code(true, false, true), ExitCode::FAILURE);
        assert_eq!(exit_code(true, true, false), ExitCode::FAILURE);
    }
}
