//! The control socket from outside (compat.md §7.3, §10 items 98–101): NDJSON requests, one
//! response line each, several per connection.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Conn {
    fn open(home: &TestHome) -> Conn {
        let s = UnixStream::connect(home.path().join("run/kernel.sock")).expect("connect");
        s.set_read_timeout(Some(T)).unwrap();
        Conn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
    fn ask(&mut self, line: &str) -> Value {
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).expect("response line");
            let v: Value = serde_json::from_str(&l).expect("JSON response");
            if v.get("ok").is_some() {
                return v;
            }
        }
    }
}

#[test]
fn control_commands() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("one").manifest(json!({"provides": ["s1"]})));
    let _k = home.start();
    home.wait_status("one", "ready", T);
    let mode = std::fs::metadata(home.path().join("run/kernel.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode");
    let mut c = Conn::open(&home);
    let list = c.ask(r#"{"cmd":"module.list"}"#);
    assert_eq!(list["ok"], true);
    assert_eq!(
        list["data"]["modules"][0],
        json!({"id": "one", "status": "ready", "provides": ["s1"]})
    );
    assert_eq!(c.ask("not json")["error"], "Invalid JSON");
    assert_eq!(c.ask(r#"{"cmd":"x"}"#)["error"], "Unknown command: x");
    assert_eq!(
        c.ask(r#"{"cmd":"module.status"}"#)["error"],
        "moduleId is required"
    );
    assert_eq!(
        c.ask(r#"{"cmd":"module.status","moduleId":"nope"}"#)["error"],
        "Module \"nope\" not found"
    );
    let st = c.ask(r#"{"cmd":"module.status","moduleId":"one"}"#);
    assert_eq!(st["data"]["id"], "one");
    assert_eq!(st["data"]["restartCount"], 0);
    assert!(st["data"]["pid"].as_u64().is_some());
    assert!(st["data"]["startedAt"].as_str().unwrap().ends_with('Z'));

    // module.install of a directory outside the home: linked, approved, spawned.
    let outside = tempfile::tempdir().unwrap();
    let src = outside.path().join("extra");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::hard_link(test_module_bin(), src.join("test-module"))
        .or_else(|_| std::fs::copy(test_module_bin(), src.join("test-module")).map(|_| ()))
        .unwrap();
    std::fs::write(
        src.join("module.json"),
        serde_json::to_vec(&json!({
            "id": "extra", "name": "Extra", "runtime": "binary", "entrypoint": "test-module",
            "permissions": {}
        }))
        .unwrap(),
    )
    .unwrap();
    let req = json!({"cmd": "module.install", "moduleDir": src}).to_string();
    let res = c.ask(&req);
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["data"]["moduleId"], "extra");
    let hash = pons_reconciler::manifest::hash(&std::fs::read(src.join("module.json")).unwrap());
    assert_eq!(res["data"]["manifestHash"], hash.as_str());
    assert!(home
        .path()
        .join("modules/extra")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    let perms = std::fs::read_to_string(home.path().join("permissions.yaml")).unwrap();
    assert!(perms.contains(&hash), "approved with the bare-hex hash");
    home.wait_status("extra", "ready", T);
}
