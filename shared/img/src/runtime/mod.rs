//! A container runtime on Linux namespaces: what img-run runs a container with.
//!
//! One concept per file: the runtime spec we read ([`spec`]), namespaces, mounts and
//! pivot_root (with the overlay root over layer snapshots, [`overlay`], and the /etc files
//! docker provides, [`etc_files`]), users, capabilities, cgroups (with device rules:
//! [`device_rules`], v2's [`cgroup_bpf`]), the pty, signals, the final process setup and
//! exec ([`process`]), and the life of one container ([`container`]). [`sealed_exe`] keeps
//! the runtime's own binary out of the container's reach; [`seccomp`] limits the syscalls
//! the container may make. docker's `run` flags are img-run's own, not the runtime's.

pub mod apparmor;
pub mod capabilities;
pub mod cgroup;
pub mod cgroup_bpf;
pub mod container;
pub mod device_rules;
pub mod devices;
pub mod etc_files;
pub mod fields;
pub mod fork;
pub mod hooks;
pub mod mounts;
pub mod namespaces;
pub mod overlay;
pub mod process;
pub mod pty;
pub mod sealed_exe;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod sysctl;
pub mod user;

pub use container::{Container, Outcome, run};
pub use mounts::Rootfs;
pub use spec::Spec;
