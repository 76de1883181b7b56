//! Variable expansion against Docker's rules, its bounds, and the pattern automaton against
//! the backtracking matcher it replaced.

use super::glob::{class_end, class_matches};
use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "FILE" => Some("dir/sub/file.tar.gz".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn x(word: &str) -> String {
    expand(word, '\\', &env).unwrap()
}

#[test]
fn pattern_operators() {
    assert_eq!(x("${FILE#*/}"), "sub/file.tar.gz");
    assert_eq!(x("${FILE##*/}"), "file.tar.gz");
    assert_eq!(x("${FILE%.*}"), "dir/sub/file.tar");
    assert_eq!(x("${FILE%%.*}"), "dir/sub/file");
    assert_eq!(x("${FILE/sub/SUB}"), "dir/SUB/file.tar.gz");
    assert_eq!(x("${FILE//[a-z]/x}"), "xxx/xxx/xxxx.xxx.xx");
    assert_eq!(x("${FILE/.tar/}"), "dir/sub/file.gz");
    assert_eq!(x("${FILE#nomatch}"), "dir/sub/file.tar.gz");
    assert_eq!(x("${UNSET##*/}"), "");
}

#[test]
fn set_and_unset_modifiers() {
    assert_eq!(x("${EMPTY-w}"), "");
    assert_eq!(x("${UNSET-w}"), "w");
    assert_eq!(x("${EMPTY+w}"), "w");
    assert_eq!(x("${UNSET+w}"), "");
    assert_eq!(x("${EMPTY:-w}"), "w");
    assert!(
        expand("${UNSET:?custom message}", '\\', &env).unwrap_err().to_string().contains("custom message")
    );
    assert_eq!(expand("a`$FILE", '`', &env).unwrap(), "a$FILE");
}

/// Variables for the bound tests: `BIG` is 600 KiB, `A60` sixty `a`s, `AB` 10,000 bytes.
fn big_env(name: &str) -> Option<String> {
    match name {
        "BIG" => Some("x".repeat(600 << 10)),
        "A60" => Some("a".repeat(60)),
        "AB" => Some("ab".repeat(5_000)),
        "R300" => Some("r".repeat(300)),
        _ => None,
    }
}

#[test]
fn nesting_is_bounded_not_a_stack_overflow() {
    let nested = |depth: usize| format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
    assert_eq!(expand(&nested(MAX_NESTING), '\\', &env).unwrap(), "x");
    for depth in [MAX_NESTING + 1, 100_000] {
        let err = expand(&nested(depth), '\\', &env).unwrap_err().to_string();
        assert_eq!(err, "variable substitutions nested more than 100 deep");
        assert!(expand_words(&nested(depth), '\\', &env).is_err());
    }
    // In quotes, in patterns and replacements, the same count.
    let quoted = format!("{}x{}", "\"${a:-".repeat(100_000), "}\"".repeat(100_000));
    assert!(expand(&quoted, '\\', &env).is_err());
    let replaced = format!("{}x{}", "${FILE/a/".repeat(100_000), "}".repeat(100_000));
    assert!(expand(&replaced, '\\', &env).unwrap_err().to_string().contains("nested"));
    let pattern = format!("{}x{}", "${FILE/${a:-".repeat(50_000), "}/y}".repeat(50_000));
    assert!(expand(&pattern, '\\', &env).unwrap_err().to_string().contains("nested"));
}

#[test]
fn pathological_patterns_take_polynomial_time() {
    // A backtracking matcher tries about C(60, 30) ways to place these stars.
    let stars = "*a".repeat(30);
    let x = |word: String| expand(&word, '\\', &big_env).unwrap();
    assert_eq!(x(format!("${{A60#{stars}b}}")), "a".repeat(60));
    assert_eq!(x(format!("${{A60##{stars}b}}")), "a".repeat(60));
    assert_eq!(x(format!("${{A60%{stars}b}}")), "a".repeat(60));
    assert_eq!(x(format!("${{A60%%{stars}b}}")), "a".repeat(60));
    assert_eq!(x(format!("${{A60/{stars}b/x}}")), "a".repeat(60));
    assert_eq!(x(format!("${{A60//{stars}b/x}}")), "a".repeat(60));
    assert_eq!(x(format!("${{A60##{stars}}}")), "");
    assert_eq!(x(format!("${{A60#{stars}}}")), "a".repeat(30));
    assert_eq!(x(format!("${{A60%{stars}}}")), "a".repeat(30));
    // Long values: a quadratic matcher would take minutes here too.
    assert_eq!(x("${AB//b/}".into()), "a".repeat(5_000));
    assert_eq!(x("${AB//?/x}".into()), "x".repeat(10_000));
    assert_eq!(x("${AB//*b/x}".into()), "x");
    assert_eq!(x("${AB##*a}".into()), "b");
    assert_eq!(x("${AB%%b*}".into()), "a");
    assert_eq!(x("${AB/a*a/}".into()), "b");
}

#[test]
fn expansions_cannot_grow_without_bound() {
    // `ENV B=$A$A`, a line at a time, doubles the value: it stops at MAX_EXPANSION.
    assert_eq!(expand("$BIG", '\\', &big_env).unwrap().len(), 600 << 10);
    for word in [
        "$BIG$BIG",
        "${BIG}${BIG}",
        "\"$BIG$BIG\"",
        "${X:-$BIG$BIG}",
        "\"$BIG\"\"$BIG\"",
        "${AB//a/$R300}",
        "${BIG/$BIG$BIG/}",
    ] {
        let err = expand(word, '\\', &big_env).unwrap_err().to_string();
        assert!(err.contains("more than 1048576 bytes"), "{word}: {err}");
        assert!(expand_words(word, '\\', &big_env).is_err(), "{word}");
    }
    // Work: each is cheap to write, and took minutes or hours.
    let lookups = "${BIG:+x}".repeat(200);
    let long_pattern = format!("${{BIG##{}}}", "*x".repeat(200));
    for word in [&lookups, &long_pattern] {
        let err = expand(word, '\\', &big_env).unwrap_err().to_string();
        assert!(err.contains("takes more than 16777216 steps"), "{}: {err}", &word[..20]);
    }
    // Only the live states count: a long literal pattern is one state at a time.
    assert_eq!(expand(&"${BIG:+x}".repeat(20), '\\', &big_env).unwrap(), "x".repeat(20));
    assert_eq!(expand("${BIG##*x}${BIG#$BIG}", '\\', &big_env).unwrap(), "");
    // Text written out (a heredoc, say) is not counted against it.
    let written = "y".repeat(3 << 20);
    assert_eq!(expand(&format!("{written}$BIG"), '\\', &big_env).unwrap().len(), (3 << 20) + (600 << 10));
}

/// The backtracking matcher the automaton replaced: the definition of what should match.
fn reference_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).any(|i| reference_match(&pattern[1..], &text[i..])),
        Some('?') => !text.is_empty() && reference_match(&pattern[1..], &text[1..]),
        Some('[') => match (class_end(pattern), text.first()) {
            (Some(end), Some(&t)) => {
                class_matches(&pattern[1..end], t) && reference_match(&pattern[end + 1..], &text[1..])
            }
            (None, Some(&t)) => t == '[' && reference_match(&pattern[1..], &text[1..]),
            (_, None) => false,
        },
        Some(&p) => text.first() == Some(&p) && reference_match(&pattern[1..], &text[1..]),
    }
}

fn reference_ops(value: &str, pattern: &str) -> [String; 6] {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let n = v.len();
    let s = |a: usize, b: usize| v[a..b].iter().collect::<String>();
    let prefix = |lens: Vec<usize>| {
        lens.into_iter().find(|&k| reference_match(&p, &v[..k])).map_or(value.to_string(), |k| s(k, n))
    };
    let suffix = |starts: Vec<usize>| {
        starts.into_iter().find(|&k| reference_match(&p, &v[k..])).map_or(value.to_string(), |k| s(0, k))
    };
    let replace = |all: bool| {
        if p.is_empty() {
            return value.to_string();
        }
        let (mut out, mut i, mut replaced) = (String::new(), 0, false);
        while i < n {
            let hit = if replaced && !all {
                None
            } else {
                (i + 1..=n).rev().find(|&end| reference_match(&p, &v[i..end]))
            };
            match hit {
                Some(end) => (out, i, replaced) = (out + "R", end, true),
                None => {
                    out.push(v[i]);
                    i += 1;
                }
            }
        }
        out
    };
    [
        prefix((0..=n).collect()),
        prefix((0..=n).rev().collect()),
        suffix((0..=n).rev().collect()),
        suffix((0..=n).collect()),
        replace(false),
        replace(true),
    ]
}

#[test]
fn the_automaton_matches_what_backtracking_did() {
    // Every pattern of up to three pieces against texts of up to five characters.
    let pieces = ["a", "b", "*", "?", "[ab]", "[!a]", "[", "]", "[]a]", "[a-b]"];
    let mut patterns = vec![String::new()];
    for _ in 0..3 {
        let longer: Vec<String> =
            patterns.iter().flat_map(|p| pieces.iter().map(move |q| format!("{p}{q}"))).collect();
        patterns.extend(longer);
    }
    patterns.sort();
    patterns.dedup();
    let mut texts = vec![String::new()];
    for _ in 0..5 {
        let longer: Vec<String> =
            texts.iter().flat_map(|t| ["a", "b", "["].map(|c| format!("{t}{c}"))).collect();
        texts.extend(longer);
    }
    texts.sort();
    texts.dedup();
    let mut checked = 0;
    for (i, pattern) in patterns.iter().enumerate() {
        // A sample of the texts for each pattern keeps this quick; across the patterns
        // every text is used many times.
        for text in texts.iter().skip(i % 11).step_by(11) {
            let glob = Glob::new(pattern);
            let work = &mut Work(usize::MAX);
            let got = [
                glob.remove_prefix(text, false, work).unwrap(),
                glob.remove_prefix(text, true, work).unwrap(),
                glob.remove_suffix(text, false, work).unwrap(),
                glob.remove_suffix(text, true, work).unwrap(),
                glob.replace(text, "R", false, usize::MAX, work).unwrap(),
                glob.replace(text, "R", true, usize::MAX, work).unwrap(),
            ];
            assert_eq!(got, reference_ops(text, pattern), "pattern {pattern:?} on {text:?}");
            checked += 1;
        }
    }
    assert!(checked > 30_000, "{checked}");
}
