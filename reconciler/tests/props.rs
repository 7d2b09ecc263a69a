//! Property tests: the parsers and the desired-state builder never panic on arbitrary bytes.

use pons_reconciler::snapshot::{EntryProbe, FileRead, ModuleDir, Snapshot};
use pons_reconciler::{build_desired, config, manifest, permissions};
use proptest::prelude::*;

/// Bytes that are often almost-valid YAML / JSON.
fn yamlish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[a-z:{}\\[\\], \n\"'#&*!|>-]{0,200}".prop_map(String::into_bytes),
        "(modules:\n  [a-z]{1,3}:\n    (base|permissions): (\\{\\}|\\[\\]|x|\n      net: \\[a\\]))\n(  [a-z]: [0-9a-z]{0,3}\n){0,3}"
            .prop_map(String::into_bytes),
    ]
}

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "\\{(\"(id|name|permissions|runtime|entry|priority|requires|provides|minProtocolVersion)\": ?(\"[a-z.]{0,4}\"|\\{\\}|\\[\\]|[0-9]{1,3}|null|\\{\"net\": ?\\[\"a\"\\]\\}),? ?){0,8}\\}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn manifest_parse_never_panics(bytes in jsonish()) {
        let _ = manifest::parse(&bytes);
        let _ = manifest::hash(&bytes);
    }

    #[test]
    fn permissions_parse_never_panics(bytes in yamlish()) {
        if let Ok(f) = permissions::parse(&bytes) {
            // What parses renders, and the rendering parses back to the same file.
            let text = permissions::render(&f);
            prop_assert_eq!(permissions::parse(text.as_bytes()).ok(), Some(f));
        }
    }

    #[test]
    fn config_parse_never_panics(bytes in yamlish()) {
        if let Ok(v) = config::parse(&bytes) {
            let _ = config::kernel_config(&v, &Default::default());
            let _ = config::interpolate(&v, &Default::default());
        }
    }

    #[test]
    fn build_desired_never_panics(m in jsonish(), c in yamlish(), p in yamlish()) {
        let snap = Snapshot {
            home: "/h".into(),
            config_yaml: FileRead::Bytes(c),
            permissions_yaml: FileRead::Bytes(p),
            modules: vec![ModuleDir {
                dir_name: "m".into(),
                path: "/h/modules/m".into(),
                real_path: Some("/h/modules/m".into()),
                is_dir: true,
                manifest: FileRead::Bytes(m),
                entry: Some(EntryProbe {
                    requested: "runner.ts".into(),
                    real: Some("/h/modules/m/runner.ts".into()),
                    js_sibling: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = build_desired(&snap, None);
        let _ = build_desired(&snap, Some(&d));
    }
}
