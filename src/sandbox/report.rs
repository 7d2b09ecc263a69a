//! What a module may touch, as JSON for `pons status --json` and `pons modules list`.
//!
//! Built from the same rule list a module's process enforces ([`rules::module_rules`]). Variable
//! *names* only are listed: values may be secrets.

use pons_reconciler::desired::SandboxPolicy;
use serde_json::{json, Value};

use super::rules::{module_rules, Grant, Origin, Rule};
use super::support::support;

/// `{"landlock":"enforced","abi":7,"required":false,"capabilities":"dropped",
/// "procIsolation":"landlock","read":[…],"write":[…],"exec":[…],"env":["HOME",…],"limits":{…},
/// "system":{"read":[…],"write":[…],"exec":[…]}}`.
///
/// `capabilities`: `"dropped"` when the kernel holds capabilities (it runs as root) and each
/// module process drops them all, `"none"` when it has none to hand out. `procIsolation`: what keeps
/// the module out of other processes' `/proc/<pid>/environ`, `mem` and `fd` — `"landlock"` (a
/// capability-less process in a Landlock domain may inspect only its own domain's processes) or
/// `"none"` (without Landlock, a process of the same uid that holds no capabilities is readable).
///
/// `read` / `write` / `exec` are the module's own paths: its directory, approved permissions,
/// what deno's configuration file lets deno reach, program (in `policy.exec`) and what those need
/// to start (loader, `#!` interpreter, private install-prefix libraries); `system` holds the
/// defaults every module gets on this machine.
pub fn module_sandbox_report(policy: &SandboxPolicy, env: &[(String, String)]) -> Value {
    let rules = module_rules(policy, None);
    let pick = |origin: &dyn Fn(Origin) -> bool, grant: Grant| -> Vec<String> {
        rules
            .iter()
            .filter(|r: &&Rule| origin(r.origin) && r.grant == grant)
            .map(|r| r.path.display().to_string())
            .collect()
    };
    let own = |o: Origin| o != Origin::System;
    let sys = |o: Origin| o == Origin::System;
    let mut env_names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    env_names.sort_unstable();
    env_names.dedup();
    let s = support();
    json!({
        "landlock": s.state.as_str(),
        "abi": s.landlock_abi,
        "required": policy.required,
        "capabilities": super::caps::report(),
        "procIsolation": if s.state == super::SandboxState::Unavailable { "none" } else { "landlock" },
        "read": pick(&own, Grant::Read),
        "write": pick(&own, Grant::ReadWrite),
        "exec": pick(&own, Grant::Exec),
        "env": env_names,
        "limits": policy.limits,
        "system": {
            "read": pick(&sys, Grant::Read),
            "write": pick(&sys, Grant::ReadWrite),
            "exec": pick(&sys, Grant::Exec),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pons_reconciler::desired::Limits;

    #[test]
    fn report_lists_paths_names_and_limits() {
        let policy = SandboxPolicy {
            read: vec!["/srv/mod".into()],
            write: vec!["/srv/mod/data".into()],
            exec: vec!["/bin/sh".into()],
            runtime_read: vec!["/srv/sdk".into()],
            limits: Limits {
                open_files: Some(64),
                ..Limits::default()
            },
            required: true,
            ..SandboxPolicy::default()
        };
        let env = vec![
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("API_KEY".to_string(), "secret".to_string()),
        ];
        let r = module_sandbox_report(&policy, &env);
        assert_eq!(r["read"], json!(["/srv/mod", "/srv/sdk"]));
        assert_eq!(r["write"], json!(["/srv/mod/data"]));
        assert_eq!(r["exec"][0], "/bin/sh");
        assert!(
            r["exec"].as_array().unwrap().len() >= 2,
            "loader of sh: {r}"
        );
        assert_eq!(r["env"], json!(["API_KEY", "PATH"]));
        assert!(!r.to_string().contains("secret"));
        assert_eq!(r["limits"]["openFiles"], 64);
        assert_eq!(r["required"], true);
        assert!(r["system"]["read"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc")));
        assert!(r["system"]["write"]
            .as_array()
            .unwrap()
            .contains(&json!("/dev/null")));
        assert_eq!(r["landlock"], support().state.as_str());
        let caps = if rustix::process::geteuid().is_root() {
            "dropped"
        } else {
            r["capabilities"].as_str().unwrap()
        };
        assert_eq!(r["capabilities"], caps);
        assert!(["landlock", "none"].contains(&r["procIsolation"].as_str().unwrap()));
    }
}
