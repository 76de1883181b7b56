//! BuildKit's parser and shell-expansion test data (tests/data/conformance, with its source and
//! license in its README) against the front end.

use std::fs;
use std::path::PathBuf;

use img_dockerfile::{checks, node, parser, shell};

fn conformance() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance");
    assert!(dir.is_dir(), "conformance data missing at {}", dir.display());
    dir
}

#[test]
fn every_positive_parser_case_gives_the_expected_instructions() {
    let root = conformance().join("dockerfile-parser/testfiles");
    let mut cases = 0;
    let mut failures = Vec::new();
    for entry in fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let text = fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(dir.join("result")).unwrap().replace("\r\n", "\n");
        cases += 1;
        match parser::parse(&text) {
            Ok(df) => {
                let got: String = df.nodes.iter().map(|n| node::dump(n) + "\n").collect();
                if got != expected {
                    failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", dir.display()));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    assert_eq!(cases, 33, "expected 33 positive cases");
    assert!(failures.is_empty(), "{} of {cases} cases differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_build_checks_read_every_parser_case_without_panicking() {
    // A normal build runs the checks first: a Dockerfile that parses must never crash them.
    let mut checked = 0;
    for kind in ["testfiles", "testfiles-negative"] {
        for entry in fs::read_dir(conformance().join("dockerfile-parser").join(kind)).unwrap() {
            let text = fs::read_to_string(entry.unwrap().path().join("Dockerfile")).unwrap();
            if let Ok(report) = checks::check(&text) {
                checked += 1;
                assert!(report.warnings.windows(2).all(|w| w[0].line <= w[1].line));
            }
        }
    }
    assert!(checked > 20, "only {checked} cases were checked");
}

#[test]
fn every_negative_parser_case_is_rejected() {
    let root = conformance().join("dockerfile-parser/testfiles-negative");
    let mut cases = 0;
    for entry in fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let text = fs::read_to_string(dir.join("Dockerfile")).unwrap();
        cases += 1;
        assert!(parser::parse(&text).is_err(), "{} was accepted", dir.display());
    }
    assert_eq!(cases, 4);
}

#[test]
fn line_numbers_match() {
    let text = fs::read_to_string(conformance().join("dockerfile-parser/testfile-line/Dockerfile")).unwrap();
    let df = parser::parse(&text).unwrap();
    assert_eq!((df.start_line, df.end_line), (5, 31));
    let spans: Vec<_> = df.nodes.iter().map(|n| (n.start_line, n.end_line)).collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
}

fn expansion_env(name: &str) -> Option<String> {
    match name {
        "PWD" => Some("/home".into()),
        "SHELL" => Some("bash".into()),
        "KOREAN" => Some("한국어".into()),
        "NULL" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn every_unix_expansion_case() {
    let text = fs::read_to_string(conformance().join("shell-expansion/envVarTest")).unwrap();
    let mut cases = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '|').collect();
        let [platform, input, expected] = fields[..] else { panic!("bad line {line:?}") };
        if platform.trim() == "W" {
            continue;
        }
        cases += 1;
        let (input, expected) = (input.trim(), expected.trim());
        let got = shell::expand(input, '\\', &expansion_env);
        match (expected, got) {
            ("error", Ok(v)) => failures.push(format!("{input:?}: expected an error, got {v:?}")),
            ("error", Err(_)) => {}
            (want, Ok(v)) if v == want => {}
            (want, got) => failures.push(format!("{input:?}: expected {want:?}, got {got:?}")),
        }
    }
    assert!(cases > 200, "only {cases} cases read");
    assert!(failures.is_empty(), "{} of {cases} differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_word_splitting_case() {
    let text = fs::read_to_string(conformance().join("shell-expansion/wordsTest")).unwrap();
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut cases = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(assign) = line.strip_prefix("ENV ") {
            let (k, v) = assign.split_once('=').unwrap();
            vars.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line.split_once('|').unwrap();
        let (input, expected) = (input.trim(), expected.trim_start());
        cases += 1;
        let env = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let got = shell::expand_words(input, '\\', &env);
        match (expected, got) {
            ("error", Err(_)) => {}
            (want, Ok(words)) if words == want.split(',').collect::<Vec<_>>() => {}
            (want, got) => failures.push(format!("{input:?}: expected {want:?}, got {got:?}")),
        }
    }
    assert!(cases > 20, "only {cases} cases read");
    assert!(failures.is_empty(), "{} of {cases} differ:\n{}", failures.len(), failures.join("\n"));
}
