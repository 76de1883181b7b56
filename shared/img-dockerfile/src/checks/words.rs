//! Reading words the rules need: the variables a word refers to, and the commands a RUN line
//! runs (which package manager, which subcommand, which arguments). A lint's reading, not a
//! shell's: enough to recognise what people write, never used to run anything.

/// Names of variables `word` refers to plainly (`$NAME`, `${NAME}`). A reference with an
/// operator (`${NAME:-default}`, `${NAME:+x}`, `${NAME?}`, …) says what happens when it is
/// unset, so it is not listed. Single-quoted text and escaped `$` refer to nothing.
pub fn plain_variables(word: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut names = Vec::new();
    let mut in_single = false;
    let mut in_double = false;
    let mut i = 0;
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if in_single {
            in_single = c != '\'';
            continue;
        }
        match c {
            _ if c == escape => i += 1,
            '\'' if !in_double => in_single = true,
            '"' => in_double = !in_double,
            '$' if chars.get(i) == Some(&'{') => {
                let start = i + 1;
                let end = (start..chars.len()).find(|&j| !is_name(chars[j])).unwrap_or(chars.len());
                if end > start && chars.get(end) == Some(&'}') {
                    names.push(chars[start..end].iter().collect());
                }
                i = end;
            }
            '$' if chars.get(i).is_some_and(|&c| c.is_ascii_alphabetic() || c == '_') => {
                let end = (i..chars.len()).find(|&j| !is_name(chars[j])).unwrap_or(chars.len());
                names.push(chars[i..end].iter().collect());
                i = end;
            }
            _ => {}
        }
    }
    names
}

/// One simple command of a shell line: the program (its base name) and its arguments.
#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
}

impl Invocation {
    /// The first argument that is not an option: `apt-get -y install x` → `install`.
    pub fn subcommand(&self) -> Option<&str> {
        self.args.iter().map(String::as_str).find(|a| !a.starts_with('-'))
    }

    /// The arguments after the subcommand that are not options (packages, for an install).
    pub fn operands(&self) -> impl Iterator<Item = &str> {
        self.args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).skip(1)
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    }
}

/// The simple commands of a shell script: split at `&&`, `||`, `;`, `|`, newlines and
/// parentheses, then on whitespace. `sudo`, `env A=b` and `python -m` are looked through, so
/// `python3 -m pip install x` is pip's.
pub fn invocations(script: &str) -> Vec<Invocation> {
    let mut out = Vec::new();
    for segment in script.split(['&', '|', ';', '\n', '(', ')', '`']) {
        let mut words = segment.split_whitespace().map(|w| w.trim_matches(['"', '\'']));
        let mut program = None;
        for word in words.by_ref() {
            let base = word.rsplit('/').next().unwrap_or(word);
            match base {
                "sudo" | "env" | "exec" | "command" | "then" | "do" | "else" | "{" => continue,
                _ if word.contains('=') || word.starts_with('-') || word.is_empty() => continue,
                _ => {
                    program = Some(base.to_string());
                    break;
                }
            }
        }
        let Some(mut program) = program else { continue };
        let mut args: Vec<String> = words.map(str::to_string).collect();
        if program.starts_with("python") && args.first().is_some_and(|a| a == "-m") && args.len() > 1 {
            program = args[1].clone();
            args.drain(..2);
        }
        out.push(Invocation { program, args });
    }
    out
}

/// Whether a variable's name says it holds a secret: a word of it (split at `_`, `-`, `.` and
/// lower-to-upper case changes) is `password`, `secret`, `token`…, or `api`/`access`/
/// `private` then `key`. A name with `public` in it is not.
pub fn names_a_secret(name: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.') {
            words.push(std::mem::take(&mut word));
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_ascii_lowercase();
        word.push(c.to_ascii_lowercase());
    }
    words.push(word);
    if words.iter().any(|w| w == "public") {
        return false;
    }
    let secret = |w: &str| {
        matches!(
            w,
            "password"
                | "passwd"
                | "secret"
                | "secrets"
                | "token"
                | "apikey"
                | "passphrase"
                | "credential"
                | "credentials"
        )
    };
    words.iter().any(|w| secret(w))
        || words.windows(2).any(|p| matches!(p[0].as_str(), "api" | "access" | "private") && p[1] == "key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_plainly_referred_to() {
        assert_eq!(plain_variables("$A/${B}/${C:-x}/$1/'$D' \"$E\" \\$F", '\\'), ["A", "B", "E"]);
        assert_eq!(plain_variables("`$A $B", '`'), ["B"]);
        assert_eq!(plain_variables("no vars, $ alone, ${}", '\\'), Vec::<String>::new());
    }

    #[test]
    fn commands_of_a_script() {
        let found = invocations(
            "set -e; apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y install gcc=4:12 \
             | tee log\n sudo /usr/bin/python3 -m pip install --user x",
        );
        let programs: Vec<&str> = found.iter().map(|i| i.program.as_str()).collect();
        assert_eq!(programs, ["set", "apt-get", "apt-get", "tee", "pip"]);
        assert_eq!(found[2].subcommand(), Some("install"));
        assert_eq!(found[2].operands().collect::<Vec<_>>(), ["gcc=4:12"]);
        assert!(found[4].has_flag("--user") && !found[4].has_flag("--no-cache-dir"));
    }

    #[test]
    fn secret_names() {
        for name in ["DB_PASSWORD", "githubToken", "AWS_SECRET_ACCESS_KEY", "API_KEY", "apikey", "NPM_TOKEN"]
        {
            assert!(names_a_secret(name), "{name}");
        }
        for name in
            ["PATH", "PUBLIC_KEY", "KEYBOARD", "TOKENIZER_DIR", "GPG_KEY", "PASSWORD_MIN_LENGTH_X_PUBLIC"]
        {
            assert!(!names_a_secret(name), "{name}");
        }
    }
}
