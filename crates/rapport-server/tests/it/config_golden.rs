//! Golden tests for configuration errors: each `tests/config/NAME.toml` is checked next
//! to the plugins it names, and what rapport says must equal `NAME.expected` (`ok` for
//! a file that must be accepted). `RAPPORT_BLESS=1` writes missing expectations
//! instead of failing; review them before committing.

use rapport_plugin_host::{HostConfig, PluginHost};
use rapport_server::Config;
use std::path::{Path, PathBuf};

fn env(name: &str) -> Option<String> {
    match name {
        "RAPPORT_TEST_FEED_TOKEN" => Some("feed-token".into()),
        "RAPPORT_DATABASE" => None,
        _ => None,
    }
}

/// Copies a case and the plugins it may name into a fresh directory.
fn stage(case: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rapport.toml");
    std::fs::copy(case, &config).unwrap();
    std::fs::copy(
        rapport_testkit::EXAMPLE_FEED,
        dir.path().join("example-feed.wasm"),
    )
    .unwrap();
    std::fs::copy(rapport_testkit::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    std::fs::write(
        dir.path().join("not-a-plugin.wasm"),
        b"#!/bin/sh\necho hello\n",
    )
    .unwrap();
    // Secrets kept in files: one as an editor saves it (with a line end), one empty.
    std::fs::write(dir.path().join("feed-token.secret"), "feed-token\n").unwrap();
    std::fs::write(dir.path().join("empty.secret"), "").unwrap();
    (dir, config)
}

async fn check(host: &PluginHost, config_path: &Path) -> String {
    let source = std::fs::read_to_string(config_path).unwrap();
    let result = match Config::parse(&source, config_path, &env) {
        Ok(config) => config.bind_connectors(host).await.map(|_| ()),
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => "ok".to_owned(),
        Err(error) => {
            let dir = config_path.parent().unwrap().display().to_string();
            error.to_string().replace(&format!("{dir}/"), "")
        }
    }
}

#[tokio::test]
async fn configuration_errors_match_their_golden_files() {
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the golden cases are missing");
    let bless = std::env::var("RAPPORT_BLESS").is_ok_and(|value| value == "1");
    let mut failures = Vec::new();
    for case in &cases {
        let (_dir, staged) = stage(case);
        let said = check(&host, &staged).await;
        let expected_path = case.with_extension("expected");
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected.trim_end() == said => {}
            Ok(expected) => failures.push(format!(
                "{}:\n  expected: {}\n  said:     {said}",
                case.display(),
                expected.trim_end()
            )),
            Err(_) if bless => std::fs::write(&expected_path, format!("{said}\n")).unwrap(),
            Err(_) => failures.push(format!(
                "{}: no .expected file; it said: {said}",
                case.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn environment_overrides_win_over_the_file() {
    let source = "[server]\nlisten = \"127.0.0.1:8080\"\ndatabase = \"sqlite://file.db\"\n";
    let overridden = |name: &str| match name {
        "RAPPORT_DATABASE" => Some("postgres://db.internal/rapport".to_owned()),
        "RAPPORT_LISTEN" => Some("0.0.0.0:9000".to_owned()),
        "RAPPORT_NODE_ID" => Some("node-7".to_owned()),
        _ => None,
    };
    let config =
        Config::parse(source, Path::new("/etc/rapport/rapport.toml"), &overridden).unwrap();
    assert_eq!(config.database, "postgres://db.internal/rapport");
    assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.node_id.as_deref(), Some("node-7"));

    let plain = Config::parse(source, Path::new("/etc/rapport/rapport.toml"), &|_| None).unwrap();
    assert_eq!(
        plain.database, "sqlite:///etc/rapport/file.db",
        "relative to the file"
    );
    assert_eq!(plain.listen.to_string(), "127.0.0.1:8080");
}

#[tokio::test]
async fn the_example_configuration_is_valid() {
    // rapport.example.toml documents every key; it must stay loadable, and its
    // settings must be what the reference connectors understand. Secrets are test ones.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rapport.example.toml");
    let source = std::fs::read_to_string(&example).unwrap();
    // Copied alone, as an operator would: every plugin it names ships inside rapport.
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("rapport.toml");
    std::fs::write(&config_path, &source).unwrap();
    let everything_set = |name: &str| (!name.starts_with("RAPPORT_")).then(|| "set".to_owned());
    let config = Config::parse(&source, &config_path, &everything_set)
        .unwrap_or_else(|error| panic!("rapport.example.toml does not parse:\n{error}"));
    assert!(!config.connectors.is_empty());
    for connector in &config.connectors {
        assert!(
            matches!(connector.plugin, rapport_server::PluginSource::Builtin(_)),
            "connector `{}` names {}, which a copy of the example does not have",
            connector.id,
            connector.plugin
        );
    }
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let bound = config
        .bind_connectors(&host)
        .await
        .unwrap_or_else(|error| panic!("rapport.example.toml does not bind:\n{error}"));
    assert_eq!(bound.len(), config.connectors.len());
}

#[test]
fn a_secret_file_gives_its_contents_without_the_line_end() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/builtin.toml");
    let (_dir, config_path) = stage(&case);
    let config = Config::load(&config_path).unwrap();
    assert_eq!(config.connectors[0].secrets["token"], "feed-token");
    assert_eq!(
        config.connectors[0].plugin.to_string(),
        "builtin:example-feed"
    );
}
