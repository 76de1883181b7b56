//! Instructions that change only the image's config: ARG, ENV, LABEL, USER, EXPOSE, VOLUME,
//! STOPSIGNAL, SHELL, CMD, ENTRYPOINT, HEALTHCHECK, ONBUILD, MAINTAINER. Each adds an empty
//! history entry (ARG adds none) and moves the cache key on by what it wrote.

use anyhow::Result;
use img_dockerfile::instruction::{Command, Health, Step};
use serde_json::{Value, json};

use super::{Builder, StepContext};
use crate::state::ImageState;

impl Builder<'_> {
    pub(super) fn dispatch_arg(
        &self,
        cx: &mut StepContext,
        step: &Step,
        args: &[(String, Option<String>)],
    ) -> Result<()> {
        let mut text = Vec::new();
        for (name, default) in args {
            let value = self
                .options
                .build_args
                .get(name)
                .cloned()
                .or(default.as_deref().map(|d| cx.expand(d)).transpose()?)
                .or_else(|| cx.globals.get(name).cloned());
            match value {
                Some(v) => {
                    text.push(format!("{name}={v}"));
                    cx.state.args.insert(name.clone(), v);
                }
                None => text.push(name.clone()),
            }
        }
        self.log(cx.stage, &step.text, "");
        cx.key = cx.key.then(&["ARG", &text.join(" ")]);
        Ok(())
    }

    pub(super) fn dispatch_env(
        &self,
        cx: &mut StepContext,
        step: &Step,
        pairs: &[(String, String)],
    ) -> Result<()> {
        self.set_pairs(cx, step, "ENV", pairs, ImageState::set_env)
    }

    pub(super) fn dispatch_label(
        &self,
        cx: &mut StepContext,
        step: &Step,
        pairs: &[(String, String)],
    ) -> Result<()> {
        self.set_pairs(cx, step, "LABEL", pairs, ImageState::set_label)
    }

    /// ENV and LABEL: each `key=value` expanded and set. Every value sees the variables as they
    /// were before the instruction (`set` changes the state, not the step's variables).
    fn set_pairs(
        &self,
        cx: &mut StepContext,
        step: &Step,
        keyword: &str,
        pairs: &[(String, String)],
        set: fn(&mut ImageState, &str, &str),
    ) -> Result<()> {
        let mut shown = Vec::new();
        for (k, v) in pairs {
            let (k, v) = (cx.expand(k)?, cx.expand(v)?);
            set(&mut cx.state, &k, &v);
            shown.push(format!("{k}={v}"));
        }
        self.commit_config(cx, step, format!("{keyword} {}", shown.join(" ")));
        Ok(())
    }

    pub(super) fn dispatch_user(&self, cx: &mut StepContext, step: &Step, user: &str) -> Result<()> {
        let user = cx.expand(user)?;
        cx.state.set("User", json!(user));
        self.commit_config(cx, step, format!("USER {user}"));
        Ok(())
    }

    pub(super) fn dispatch_expose(&self, cx: &mut StepContext, step: &Step, ports: &[String]) -> Result<()> {
        let mut shown = Vec::new();
        for p in ports {
            for p in cx.expand_words(p)? {
                cx.state.expose(&p)?;
                shown.push(p);
            }
        }
        self.commit_config(cx, step, format!("EXPOSE map[{}]", shown.join(" ")));
        Ok(())
    }

    pub(super) fn dispatch_volume(
        &self,
        cx: &mut StepContext,
        step: &Step,
        volumes: &[String],
    ) -> Result<()> {
        for v in volumes {
            let v = cx.expand(v)?;
            cx.state.add_volume(&v);
        }
        self.commit_config(cx, step, format!("VOLUME {volumes:?}"));
        Ok(())
    }

    pub(super) fn dispatch_stopsignal(&self, cx: &mut StepContext, step: &Step, signal: &str) -> Result<()> {
        let signal = cx.expand(signal)?;
        cx.state.set("StopSignal", json!(signal));
        self.commit_config(cx, step, format!("STOPSIGNAL {signal}"));
        Ok(())
    }

    pub(super) fn dispatch_shell(&self, cx: &mut StepContext, step: &Step, argv: &[String]) -> Result<()> {
        cx.state.set("Shell", json!(argv));
        self.commit_config(cx, step, format!("SHELL {argv:?}"));
        Ok(())
    }

    pub(super) fn dispatch_cmd(&self, cx: &mut StepContext, step: &Step, command: &Command) -> Result<()> {
        cx.state.set_cmd(command);
        let created_by = format!("CMD {:?}", cx.state.argv(command));
        self.commit_config(cx, step, created_by);
        Ok(())
    }

    pub(super) fn dispatch_entrypoint(
        &self,
        cx: &mut StepContext,
        step: &Step,
        command: &Command,
    ) -> Result<()> {
        cx.state.set_entrypoint(command);
        let created_by = format!("ENTRYPOINT {:?}", cx.state.argv(command));
        self.commit_config(cx, step, created_by);
        Ok(())
    }

    pub(super) fn dispatch_healthcheck(
        &self,
        cx: &mut StepContext,
        step: &Step,
        health: &Health,
    ) -> Result<()> {
        cx.state.set_healthcheck(health)?;
        self.commit_config(cx, step, step.text.clone());
        Ok(())
    }

    pub(super) fn dispatch_onbuild(&self, cx: &mut StepContext, step: &Step, trigger: &str) -> Result<()> {
        cx.state.add_onbuild(trigger);
        self.commit_config(cx, step, format!("ONBUILD {trigger}"));
        Ok(())
    }

    pub(super) fn dispatch_maintainer(&self, cx: &mut StepContext, step: &Step, name: &str) -> Result<()> {
        cx.state.config.insert("author".into(), json!(name));
        self.commit_config(cx, step, format!("MAINTAINER {name}"));
        Ok(())
    }

    /// Ends a step that changed only the config: an empty history entry saying what it did
    /// (dated as the last one, so a rebuild gives the same digest), and the key moved on by
    /// that text as the history holds it.
    pub(super) fn commit_config(&self, cx: &mut StepContext, step: &Step, created_by: String) {
        let created = cx.state.last_created().unwrap_or_else(|| self.now());
        cx.state.add_history(&created, &created_by, true);
        self.log(cx.stage, &step.text, "");
        let history = cx.state.config.get("history").and_then(Value::as_array);
        let last = history.and_then(|h| h.last()).and_then(|e| e.get("created_by")).and_then(Value::as_str);
        cx.key = cx.key.then(&["meta", last.unwrap_or_default()]);
    }
}
