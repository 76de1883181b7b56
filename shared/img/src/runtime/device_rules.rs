//! Which device nodes a container may create and open: the rules of `linux.resources.devices`
//! (allow or deny, a type, a major and minor or wildcards, and access `r`/`w`/`m`), later rules
//! overriding earlier ones. docker's defaults for images, `--device-cgroup-rule` and
//! `--device`'s permissions are rules of the spec too; the runtime then appends runc's allowlist
//! (the standard nodes, `m` on everything, ptys, tun) as runc does for every container.
//!
//! The rules are enforced through the devices cgroup (v1, [`v1_writes`]) or an eBPF program
//! attached to the container's cgroup (v2, `cgroup_bpf`); [`decide`] is the meaning both follow.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// One entry of `linux.resources.devices`, as the spec spells it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceRule {
    #[serde(default)]
    pub allow: bool,
    /// `a` (all, the default), `c` or `b`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

impl DeviceRule {
    pub fn new(allow: bool, kind: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
        DeviceRule { allow, kind: Some(kind.to_string()), major, minor, access: Some(access.to_string()) }
    }
}

/// Access bits, in the encoding of the kernel's eBPF device context.
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
pub const ALL_ACCESS: u8 = MKNOD | READ | WRITE;

/// A device type a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    All,
    Char,
    Block,
}

/// A checked rule: `None` for a wildcard major or minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl Rule {
    /// Validates a spec entry (an invalid one is an error, never skipped).
    pub fn from_spec(r: &DeviceRule) -> Result<Rule> {
        let shown = serde_json::to_string(r).unwrap_or_default();
        let kind = match r.kind.as_deref().unwrap_or("a") {
            "a" => Kind::All,
            "c" => Kind::Char,
            "b" => Kind::Block,
            other => bail!("linux.resources.devices {shown}: unknown type {other:?} (a, b or c)"),
        };
        let number = |n: Option<i64>, what: &str| -> Result<Option<u32>> {
            match n {
                None | Some(-1) => Ok(None),
                // The kernel's majors have 12 bits and minors 20; keep to what an imm can hold.
                Some(v) if (0..=i32::MAX as i64).contains(&v) => Ok(Some(v as u32)),
                Some(v) => bail!("linux.resources.devices {shown}: invalid {what} {v}"),
            }
        };
        let access = match r.access.as_deref() {
            None | Some("") => bail!("linux.resources.devices {shown}: access is empty (r, w, m)"),
            Some(a) => parse_access(a).ok_or_else(|| {
                anyhow::anyhow!("linux.resources.devices {shown}: invalid access {a:?} (r, w, m)")
            })?,
        };
        Ok(Rule {
            allow: r.allow,
            kind,
            major: number(r.major, "major")?,
            minor: number(r.minor, "minor")?,
            access,
        })
    }

    /// A rule matching every device (for the access it lists).
    pub fn is_every_device(&self) -> bool {
        self.kind == Kind::All && self.major.is_none() && self.minor.is_none()
    }

    pub fn matches(&self, kind: Kind, major: u32, minor: u32) -> bool {
        (self.kind == Kind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

/// `rwm` in any order, each at most once.
fn parse_access(text: &str) -> Option<u8> {
    let mut bits = 0;
    for c in text.chars() {
        let bit = match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => return None,
        };
        if bits & bit != 0 {
            return None;
        }
        bits |= bit;
    }
    (bits != 0).then_some(bits)
}

fn access_text(bits: u8) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')].iter().filter(|(b, _)| bits & b != 0).map(|(_, c)| c).collect()
}

/// docker's `--device-cgroup-rule 'TYPE MAJOR:MINOR ACCESS'` (`c 1:3 mr`, `a *:* rwm`): an
/// allow rule.
pub fn parse_cgroup_rule(text: &str) -> Result<DeviceRule> {
    let bad = || {
        anyhow::anyhow!("--device-cgroup-rule {text:?}: expected 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 1:3 mr'")
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [kind, numbers, access] = fields.as_slice() else { return Err(bad()) };
    if !["a", "b", "c"].contains(kind) {
        return Err(bad());
    }
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<Option<i64>> {
        match n {
            "*" => Ok(None),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse::<u32>().map(|v| Some(v as i64)).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    };
    let rule = DeviceRule::new(true, kind, number(major)?, number(minor)?, access);
    Rule::from_spec(&rule).map_err(|_| bad())?;
    Ok(rule)
}

/// The rules docker puts in an image's spec: deny everything, then the standard nodes (moby's
/// default spec also lists /dev/console); runc's allowlist follows at run time ([`effective`]).
pub fn docker_default() -> Vec<DeviceRule> {
    let mut rules = vec![DeviceRule { allow: false, access: Some("rwm".into()), ..DeviceRule::default() }];
    for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        rules.push(DeviceRule::new(true, "c", Some(major), Some(minor), "rwm"));
    }
    rules
}

/// Everything allowed, as `--privileged` has it.
pub fn allow_all() -> Vec<DeviceRule> {
    vec![DeviceRule { allow: true, access: Some("rwm".into()), ..DeviceRule::default() }]
}

/// What runc appends to every container's rules: mknod of any node (so images can carry and
/// create them), the nodes every container has, ptys, and tun.
pub fn runtime_allowlist() -> Vec<Rule> {
    let rule = |kind, major, minor, access| Rule { allow: true, kind, major, minor, access };
    let mut out = vec![rule(Kind::Char, None, None, MKNOD), rule(Kind::Block, None, None, MKNOD)];
    // null, random, full, tty, zero, urandom
    for (major, minor) in [(1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9)] {
        out.push(rule(Kind::Char, Some(major), Some(minor), ALL_ACCESS));
    }
    out.push(rule(Kind::Char, Some(136), None, ALL_ACCESS)); // /dev/pts/*
    out.push(rule(Kind::Char, Some(5), Some(2), ALL_ACCESS)); // /dev/ptmx
    out.push(rule(Kind::Char, Some(10), Some(200), ALL_ACCESS)); // /dev/net/tun
    out
}

/// The rules to enforce for a spec's `linux.resources.devices`: none when it lists none (the
/// container is left as its parent cgroup allows, as runc does), else them (checked) followed by
/// [`runtime_allowlist`].
pub fn effective(spec_rules: &[DeviceRule]) -> Result<Vec<Rule>> {
    if spec_rules.is_empty() {
        return Ok(Vec::new());
    }
    let mut rules = spec_rules.iter().map(Rule::from_spec).collect::<Result<Vec<_>>>()?;
    rules.extend(runtime_allowlist());
    Ok(rules)
}

/// Whether the rules leave every access to every device allowed (nothing to enforce).
pub fn allows_everything(rules: &[Rule]) -> bool {
    // Per access bit: the last rule for every device that has the bit decides, unless a
    // narrower deny follows it.
    [MKNOD, READ, WRITE].iter().all(|&bit| {
        let last_every = rules.iter().rposition(|r| r.access & bit != 0 && r.is_every_device());
        let denies_after = |from: usize| rules[from..].iter().any(|r| !r.allow && r.access & bit != 0);
        match last_every {
            Some(i) => rules[i].allow && !denies_after(i + 1),
            None => !denies_after(0),
        }
    })
}

/// Whether `access` (bits) to the device `kind major:minor` is allowed: for each bit asked, the
/// last rule matching the device and listing the bit decides; no such rule allows it (a new
/// cgroup starts with its parent's permissions).
pub fn decide(rules: &[Rule], kind: Kind, major: u32, minor: u32, access: u8) -> bool {
    [MKNOD, READ, WRITE].iter().filter(|&&bit| access & bit != 0).all(|&bit| {
        rules
            .iter()
            .rev()
            .find(|r| r.access & bit != 0 && r.matches(kind, major, minor))
            .is_none_or(|r| r.allow)
    })
}

/// The cgroup v1 writes for the rules, in order, as (file, line) for a new devices cgroup.
///
/// The v1 controller is not an ordered list: it holds a default (allow or deny) and exceptions,
/// and a rule against the default only removes exceptions of exactly its device. So this
/// follows the kernel's state: a rule for every device with all access resets it (`a`); a rule
/// for all types with less becomes one line per type (the kernel reads `a` as everything); a
/// rule that takes access back removes it from every exception it covers; and one that would
/// narrow an earlier wildcard exception (allow `c 10:*`, then deny `c 10:183`) is an error, as
/// runc makes it, because v1 cannot express it.
pub fn v1_writes(rules: &[Rule]) -> Result<Vec<(&'static str, String)>> {
    struct Exception {
        kind: char,
        major: Option<u32>,
        minor: Option<u32>,
        access: u8,
    }
    let num = |n: Option<u32>| n.map_or("*".to_string(), |v| v.to_string());
    let line = |kind: char, major: Option<u32>, minor: Option<u32>, access: u8| {
        format!("{kind} {}:{} {}", num(major), num(minor), access_text(access))
    };
    // A new cgroup starts as its parent; the root allows everything.
    let mut default_allow = true;
    let mut exceptions: Vec<Exception> = Vec::new();
    let mut out = Vec::new();
    for r in rules {
        let file = if r.allow { "devices.allow" } else { "devices.deny" };
        if r.is_every_device() && r.access == ALL_ACCESS {
            default_allow = r.allow;
            exceptions.clear();
            out.push((file, "a".to_string()));
            continue;
        }
        let kinds: &[char] = match r.kind {
            Kind::All => &['c', 'b'],
            Kind::Char => &['c'],
            Kind::Block => &['b'],
        };
        for &kind in kinds {
            if r.allow != default_allow {
                // An exception to the default: added (the kernel merges the access of one device).
                match exceptions.iter_mut().find(|e| (e.kind, e.major, e.minor) == (kind, r.major, r.minor)) {
                    Some(e) => e.access |= r.access,
                    None => {
                        exceptions.push(Exception { kind, major: r.major, minor: r.minor, access: r.access })
                    }
                }
                out.push((file, line(kind, r.major, r.minor, r.access)));
                continue;
            }
            // Back to the default: remove the access from the exceptions the rule covers.
            let covers = |wide: Option<u32>, narrow: Option<u32>| wide.is_none() || wide == narrow;
            for e in exceptions.iter_mut().filter(|e| e.kind == kind && e.access & r.access != 0) {
                let overlaps = (e.major.is_none() || r.major.is_none() || e.major == r.major)
                    && (e.minor.is_none() || r.minor.is_none() || e.minor == r.minor);
                if !overlaps {
                    continue;
                }
                if !(covers(r.major, e.major) && covers(r.minor, e.minor)) {
                    bail!(
                        "device rule {:?} {} cannot be applied on cgroup v1: it narrows the earlier rule {} (the devices controller cannot punch a hole in a wildcard)",
                        if r.allow { "allow" } else { "deny" },
                        line(kind, r.major, r.minor, r.access),
                        line(e.kind, e.major, e.minor, e.access),
                    );
                }
                out.push((file, line(e.kind, e.major, e.minor, e.access & r.access)));
                e.access &= !r.access;
            }
            exceptions.retain(|e| e.access != 0);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(rules: &[DeviceRule]) -> Vec<Rule> {
        effective(rules).unwrap()
    }

    #[test]
    fn docker_defaults_deny_all_but_the_standard_nodes() {
        let rules = checked(&docker_default());
        let rw = READ | WRITE;
        for (major, minor) in
            [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, 7), (10, 200)]
        {
            assert!(decide(&rules, Kind::Char, major, minor, rw), "c {major}:{minor}");
        }
        // hwrng, loop-control, a disk, fuse: mknod yes, open no.
        for (kind, major, minor) in
            [(Kind::Char, 10, 183), (Kind::Char, 10, 237), (Kind::Block, 8, 0), (Kind::Char, 10, 229)]
        {
            assert!(decide(&rules, kind, major, minor, MKNOD), "{kind:?} {major}:{minor}");
            assert!(!decide(&rules, kind, major, minor, READ), "{kind:?} {major}:{minor}");
            assert!(!decide(&rules, kind, major, minor, WRITE), "{kind:?} {major}:{minor}");
        }
        assert!(!allows_everything(&rules));
        assert!(allows_everything(&checked(&allow_all())));
        assert!(effective(&[]).unwrap().is_empty());
    }

    #[test]
    fn later_rules_override_and_access_is_per_bit() {
        let mut spec = docker_default();
        spec.push(parse_cgroup_rule("c 10:183 rw").unwrap());
        spec.push(DeviceRule::new(false, "c", Some(10), None, "w"));
        let rules = checked(&spec);
        assert!(decide(&rules, Kind::Char, 10, 183, READ));
        assert!(!decide(&rules, Kind::Char, 10, 183, READ | WRITE));
        // Two allows that together cover the access.
        let spec = vec![
            DeviceRule { allow: false, access: Some("rwm".into()), ..DeviceRule::default() },
            DeviceRule::new(true, "c", Some(4), Some(1), "r"),
            DeviceRule::new(true, "c", Some(4), Some(1), "w"),
        ];
        assert!(decide(&checked(&spec), Kind::Char, 4, 1, READ | WRITE));
        // Type `a` with a major matches both types.
        let spec = vec![DeviceRule::new(false, "a", Some(8), None, "r")];
        let rules = checked(&spec);
        assert!(!decide(&rules, Kind::Block, 8, 1, READ) && !decide(&rules, Kind::Char, 8, 1, READ));
        assert!(decide(&rules, Kind::Block, 8, 1, WRITE) && decide(&rules, Kind::Block, 9, 1, READ));
        assert!(!allows_everything(&rules));
    }

    #[test]
    fn docker_cgroup_rule_syntax() {
        assert_eq!(
            parse_cgroup_rule("c 1:3 mr").unwrap(),
            DeviceRule::new(true, "c", Some(1), Some(3), "mr")
        );
        assert_eq!(parse_cgroup_rule("a *:* rwm").unwrap(), DeviceRule::new(true, "a", None, None, "rwm"));
        assert_eq!(parse_cgroup_rule("b 8:* r").unwrap().minor, None);
        for bad in
            ["c 1:3", "x 1:3 r", "c 1 r", "c 1:3 rx", "c 1:3 rr", "c -1:3 r", "c a:3 r", "c 1:3 r extra"]
        {
            assert!(parse_cgroup_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_rules_are_checked() {
        let bad = [
            DeviceRule { kind: Some("p".into()), access: Some("r".into()), ..DeviceRule::default() },
            DeviceRule { access: None, ..DeviceRule::default() },
            DeviceRule { access: Some("rwx".into()), ..DeviceRule::default() },
            DeviceRule { major: Some(-2), access: Some("r".into()), ..DeviceRule::default() },
        ];
        for b in bad {
            assert!(effective(std::slice::from_ref(&b)).is_err(), "{b:?}");
        }
        let json =
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]"#;
        let rules: Vec<DeviceRule> = serde_json::from_str(json).unwrap();
        assert_eq!(rules[1], DeviceRule::new(true, "c", Some(1), Some(3), "rw"));
    }

    #[test]
    fn v1_lines_as_the_kernel_reads_them() {
        let mut spec = docker_default();
        spec.push(DeviceRule::new(true, "a", Some(8), None, "m"));
        let writes = v1_writes(&checked(&spec)).unwrap();
        assert_eq!(writes[0], ("devices.deny", "a".to_string()));
        assert_eq!(writes[1], ("devices.allow", "c 1:5 rwm".to_string()));
        assert!(writes.contains(&("devices.allow", "c 8:* m".to_string())));
        assert!(writes.contains(&("devices.allow", "b 8:* m".to_string())));
        // Taking access back removes it from the narrower exceptions the rule covers.
        let rules = checked(&[
            DeviceRule { allow: false, access: Some("rwm".into()), ..DeviceRule::default() },
            DeviceRule::new(true, "c", Some(10), Some(183), "rw"),
            DeviceRule::new(false, "c", Some(10), None, "w"),
        ]);
        let writes = v1_writes(&rules).unwrap();
        assert_eq!(writes[2], ("devices.deny", "c 10:183 w".to_string()));
        // Narrowing a wildcard cannot be said on v1.
        let rules = checked(&[
            DeviceRule { allow: false, access: Some("rwm".into()), ..DeviceRule::default() },
            DeviceRule::new(true, "c", Some(10), None, "r"),
            DeviceRule::new(false, "c", Some(10), Some(183), "r"),
        ]);
        let err = v1_writes(&rules).unwrap_err().to_string();
        assert!(err.contains("c 10:183 r") && err.contains("c 10:* r"), "{err}");
        // Under a default allow, denies are the exceptions.
        let rules = checked(&[DeviceRule::new(false, "b", Some(8), None, "rw")]);
        assert_eq!(v1_writes(&rules).unwrap()[0], ("devices.deny", "b 8:* rw".to_string()));
        assert!(writes.contains(&("devices.allow", "c *:* m".to_string())));
        assert!(writes.contains(&("devices.allow", "c 136:* rwm".to_string())));
    }
}
