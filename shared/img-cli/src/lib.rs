//! The command-line conventions the img tools share: the flags several tools take
//! (`--layout`, the registry flags, `--add-host`), errors as one line, exit codes, and the man
//! pages and shell completions generated from each tool's flags.
//!
//! This is apart from the `img` library so that the library stays free of argument parsing:
//! it takes plain values (a layout path, [`img::registry::Options`]) and never knows how a
//! user spelled them.

pub mod add_host;
pub mod errors;
pub mod generate;
pub mod inputs;
pub mod layout_arg;
pub mod registry_args;
pub mod tool_main;

pub use add_host::parse_add_host;
pub use errors::one_line;
pub use generate::generate;
pub use inputs::{images, local_images, usage_error};
pub use layout_arg::LayoutArg;
pub use registry_args::{RegistryArgs, TransferArgs};
pub use tool_main::run;
