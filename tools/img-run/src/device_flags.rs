//! docker's device flags on a spec: `--device HOST[:CONTAINER[:PERMISSIONS]]`,
//! `--device-cgroup-rule 'TYPE MAJOR:MINOR ACCESS'`, and the every-device of `--privileged`.

use anyhow::Result;
use img::runtime::spec::{Device, Spec};
use img::runtime::{device_rules, devices};

/// Adds devices to the spec, each replacing one of the same path.
pub fn add_devices(spec: &mut Spec, devices: Vec<Device>) {
    for d in devices {
        spec.linux.devices.retain(|x| x.path != d.path);
        spec.linux.devices.push(d);
    }
}

/// `--privileged` allows every device; otherwise `--device` adds its node and a rule with its
/// permissions, and `--device-cgroup-rule` its rule, after the spec's (as docker does).
pub fn apply_device_options(
    spec: &mut Spec,
    device_flags: &[String],
    cgroup_rules: &[String],
    privileged: bool,
) -> Result<()> {
    let mut added = Vec::new();
    let mut rules = Vec::new();
    for d in device_flags {
        let (device, rule) = devices::parse_option(d)?;
        added.push(device);
        rules.push(rule);
    }
    for r in cgroup_rules {
        rules.push(device_rules::parse_cgroup_rule(r)?);
    }
    add_devices(spec, added);
    if privileged {
        spec.resources_mut().devices = device_rules::allow_all();
    } else if !rules.is_empty() {
        // (A bundle without rules allows every device already: these add nothing there.)
        spec.resources_mut().devices.extend(rules);
    }
    Ok(())
}
