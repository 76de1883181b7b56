//! WORKDIR: sets the config's working directory and, when the image lacks the directory,
//! makes it in a layer of its own.

use anyhow::{Context, Result};
use img::layer::apply::Node;
use img_dockerfile::instruction::Step;

use super::layers::{present_in_layers, user_in_layers};
use super::{Builder, StepContext, now_timespec, staging_applier};
use crate::context::Attributes;

impl Builder<'_> {
    pub(super) fn dispatch_workdir(&self, cx: &mut StepContext, step: &Step, dir: &str) -> Result<()> {
        let dir = cx.expand(dir)?;
        cx.state.set_workdir(&dir);
        if !self.workdir_layer(cx, step)? {
            let created_by = format!("WORKDIR {}", cx.state.workdir());
            self.commit_config(cx, step, created_by);
        }
        Ok(())
    }

    /// The directory is made (with its parents, mode 0755, owned by USER) in a layer of its
    /// own when the image lacks it, as docker does even if no later step uses it. False when
    /// the image has it: then WORKDIR only changes the config.
    fn workdir_layer(&self, cx: &mut StepContext, step: &Step) -> Result<bool> {
        let dir = cx.state.workdir();
        let created_by = format!("WORKDIR {dir}");
        let lower = self.lower_dirs(&cx.state)?;
        let rel = dir.trim_start_matches('/');
        if rel.is_empty() || present_in_layers(&lower, rel) {
            return Ok(false);
        }
        let (uid, gid) = match cx.state.user() {
            Some(user) => {
                let u =
                    user_in_layers(&lower, &user).with_context(|| format!("WORKDIR {dir}: USER {user}"))?;
                (u.uid, u.gid)
            }
            None => (0, 0),
        };
        let key = cx.key.then(&["WORKDIR", &dir, &format!("{uid}:{gid}")]);
        if self.cached(cx, step, &key, &created_by) {
            return Ok(true);
        }
        self.log(cx.stage, &step.text, "");
        let staging = tempfile::Builder::new().prefix("workdir-").tempdir_in(self.work.path())?;
        let mut out = staging_applier(staging.path())?;
        let meta = Attributes { uid, gid, mode: None }.meta(0o755, now_timespec());
        let mut path = String::new();
        for part in rel.split('/') {
            path = if path.is_empty() { part.to_string() } else { format!("{path}/{part}") };
            out.put(path.as_bytes(), Node::Dir, &meta)?;
        }
        out.finish()?;
        self.commit_staging(staging, &key, &mut cx.state, &created_by)?;
        cx.key = key;
        Ok(true)
    }
}
