//! Who the container's process runs as: docker's `-u user[:group]` resolved against the
//! container's own /etc/passwd and /etc/group (read after pivot_root, so never the host's).

use anyhow::{Result, bail};

/// The most an image's /etc/passwd or /etc/group may hold where it is read from outside the
/// container (img-unpack's `--user`, img-build's USER and `--chown`).
pub const MAX_ACCOUNTS_FILE: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups that list the user (found by name or uid in
    /// /etc/passwd), when no group was given.
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, else `/`.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || line.starts_with('#') {
            return None;
        }
        let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// A group of `--group-add`: a gid, or a name in the container's /etc/group.
pub fn group_id(spec: &str, group: &str) -> Result<u32> {
    if let Some(gid) = numeric(spec) {
        return Ok(gid);
    }
    match group_entries(group).find(|(name, _, _)| *name == spec) {
        Some((_, gid, _)) => Ok(gid),
        None => bail!("unable to find group {spec}: no matching entries in group file"),
    }
}

fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolves `user[:group]` (names or numbers; empty means root) the way docker does.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let mut out = ExecUser { uid: 0, gid: 0, groups: Vec::new(), home: "/".to_string() };
    let mut matched_name = None;
    match numeric(user_part) {
        Some(uid) => {
            out.uid = uid;
            if let Some(e) = passwd_entries(passwd).find(|e| e.uid == uid) {
                out.gid = e.gid;
                out.home = e.home.to_string();
                matched_name = Some(e.name.to_string());
            }
        }
        None => match passwd_entries(passwd).find(|e| e.name == user_part) {
            Some(e) => {
                out.uid = e.uid;
                out.gid = e.gid;
                out.home = e.home.to_string();
                matched_name = Some(e.name.to_string());
            }
            None => bail!("unable to find user {user_part}: no matching entries in passwd file"),
        },
    }
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => match numeric(g) {
            Some(gid) => out.gid = gid,
            None => match group_entries(group).find(|(name, _, _)| *name == g) {
                Some((_, gid, _)) => out.gid = gid,
                None => bail!("unable to find group {g}: no matching entries in group file"),
            },
        },
        None => {
            if let Some(name) = matched_name {
                out.groups = group_entries(group)
                    .filter(|(_, _, members)| members.contains(&name.as_str()))
                    .map(|(_, gid, _)| gid)
                    .collect();
            }
        }
    }
    if out.home.is_empty() {
        out.home = "/".to_string();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\nappgrp:x:1001:\naudio:x:29:app\n";

    #[test]
    fn names_numbers_and_groups() {
        let app = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.groups.clone(), app.home.as_str()),
            (1000, 1001, vec![10, 29], "/home/app")
        );
        let explicit = resolve("app:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((explicit.gid, explicit.groups.len()), (10, 0));
        let num = resolve("1000", PASSWD, GROUP).unwrap();
        // As runc: a uid found in /etc/passwd brings that user's supplementary groups.
        assert_eq!((num.uid, num.gid, num.groups.len()), (1000, 1001, 2));
        let unknown = resolve("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!((unknown.uid, unknown.gid, unknown.home.as_str()), (4242, 77, "/"));
        assert_eq!(resolve("", PASSWD, GROUP).unwrap().home, "/root");
        assert!(resolve("nope", PASSWD, GROUP).is_err());
        assert!(resolve("app:nogroup", PASSWD, GROUP).is_err());
        assert_eq!(
            resolve("root", "", "").unwrap_err().to_string(),
            "unable to find user root: no matching entries in passwd file"
        );
    }
}
