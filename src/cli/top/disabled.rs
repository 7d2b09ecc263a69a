//! The `s` / `S` keys of `pons top`: stop and start a module the declarative way, by adding its id
//! to `kernel.disabled` in config.yaml or removing it (a locked minimal edit; the kernel's pass
//! then stops or spawns it). The same edit as `pons stop` / `pons start`.

use serde_json::{json, Value};

use crate::home::Home;
use crate::store::{parse_yaml, remove_config_key, set_config_key, update_config_text};

/// Adds `id` to `kernel.disabled` (`disabled`) or removes it. Returns whether config.yaml
/// changed (false: it already said so).
pub fn set_disabled(home: &Home, id: &str, disabled: bool) -> anyhow::Result<bool> {
    let mut changed = false;
    update_config_text(home, |text| {
        let new = edit(text, id, disabled)?;
        changed = new != text;
        Ok(new)
    })?;
    Ok(changed)
}

/// The text of config.yaml with `id` added to or removed from `kernel.disabled`; an emptied list
/// is removed. Unchanged when it already says so.
pub fn edit(text: &str, id: &str, disabled: bool) -> anyhow::Result<String> {
    let doc = parse_yaml(text)
        .map_err(|e| anyhow::anyhow!("config.yaml is not valid YAML ({e}); fix the file first"))?;
    let mut ids: Vec<String> = match doc.pointer("/kernel/disabled") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(not_a_list)?,
        Some(_) => return Err(not_a_list()),
    };
    let present = ids.iter().any(|i| i == id);
    if present == disabled {
        return Ok(text.to_string());
    }
    if disabled {
        ids.push(id.to_string());
        ids.sort();
    } else {
        ids.retain(|i| i != id);
        if ids.is_empty() {
            let out = remove_config_key(text, "kernel.disabled")?;
            // A `kernel` section left empty by this goes too.
            return match parse_yaml(&out).ok().as_ref().and_then(|d| d.get("kernel")) {
                Some(Value::Object(m)) if m.is_empty() => remove_config_key(&out, "kernel"),
                _ => Ok(out),
            };
        }
    }
    set_config_key(text, "kernel.disabled", &json!(ids))
}

fn not_a_list() -> anyhow::Error {
    anyhow::anyhow!(
        "`kernel.disabled` in config.yaml is not a list of module ids; fix it with `pons config edit`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_removes_ids_keeping_the_rest_of_the_file() {
        let text = "# mine\nkernel:\n  reconcile: manual\ngateway:\n  port: 8080\n";
        let stopped = edit(text, "gw", true).unwrap();
        assert!(stopped.starts_with("# mine\nkernel:\n  reconcile: manual\n"));
        assert!(stopped.contains("gateway:\n  port: 8080\n"), "{stopped}");
        assert_eq!(
            parse_yaml(&stopped).unwrap()["kernel"]["disabled"],
            json!(["gw"])
        );
        assert_eq!(
            edit(&stopped, "gw", true).unwrap(),
            stopped,
            "already there"
        );
        let two = edit(&stopped, "api", true).unwrap();
        assert_eq!(
            parse_yaml(&two).unwrap()["kernel"]["disabled"],
            json!(["api", "gw"])
        );
        let one = edit(&two, "api", false).unwrap();
        assert_eq!(
            parse_yaml(&one).unwrap()["kernel"]["disabled"],
            json!(["gw"])
        );
        let none = edit(&one, "gw", false).unwrap();
        assert_eq!(
            parse_yaml(&none).unwrap(),
            parse_yaml(text).unwrap(),
            "{none}"
        );
        assert_eq!(edit(text, "gw", false).unwrap(), text, "not there");
        assert_eq!(
            parse_yaml(&edit("", "gw", true).unwrap()).unwrap(),
            json!({"kernel": {"disabled": ["gw"]}})
        );
    }

    #[test]
    fn a_bad_list_is_refused_with_what_to_do() {
        let e = edit("kernel:\n  disabled: gw\n", "x", true).unwrap_err();
        assert!(e
            .to_string()
            .contains("`kernel.disabled` in config.yaml is not a list"));
        let e = edit("kernel: [\n", "x", true).unwrap_err();
        assert!(e.to_string().contains("not valid YAML"));
    }

    #[test]
    fn writes_config_yaml_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        assert!(set_disabled(&home, "gw", true).unwrap());
        assert!(!set_disabled(&home, "gw", true).unwrap());
        let text = std::fs::read_to_string(home.config_yaml()).unwrap();
        assert_eq!(
            parse_yaml(&text).unwrap(),
            json!({"kernel": {"disabled": ["gw"]}})
        );
        assert!(set_disabled(&home, "gw", false).unwrap());
        let text = std::fs::read_to_string(home.config_yaml()).unwrap();
        assert_eq!(text, "", "the emptied kernel section goes too");
    }
}
