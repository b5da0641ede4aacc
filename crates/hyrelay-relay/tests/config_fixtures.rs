//! Every file in fixtures/config/valid parses; every file in fixtures/config/invalid is
//! refused with the message its first line (`# expect: …`) names, and with the file name.

use std::path::{Path, PathBuf};

use hyrelay_relay::config::RelayConfig;

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/config")
        .join(kind)
}

fn files(kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir(kind))
        .expect("fixtures/config exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn valid_configs_parse() {
    let v = files("valid");
    assert!(v.len() >= 2);
    for f in v {
        let c = RelayConfig::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        c.model(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

#[test]
fn invalid_configs_are_refused_with_a_clear_message() {
    let v = files("invalid");
    assert!(v.len() >= 6);
    for f in v {
        let text = std::fs::read_to_string(&f).expect("readable");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks '# expect:'", f.display()));
        let err = match RelayConfig::load(&f).and_then(|c| c.model(&f)) {
            Ok(_) => panic!("{} was accepted", f.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expect),
            "{}: '{err}' does not mention '{expect}'",
            f.display()
        );
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            err.contains(name),
            "{}: error does not name the file: {err}",
            f.display()
        );
    }
}
