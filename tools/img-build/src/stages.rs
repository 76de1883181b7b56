//! Multi-stage structure: global ARGs before the first FROM, stages split at each FROM, and
//! which stages a target needs, in the order they must be built.

use anyhow::{Result, bail};

use crate::instruction::{Instruction, Step};

#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// The FROM step.
    pub from: Step,
    /// Every step after FROM.
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stages {
    /// ARGs before the first FROM: usable in FROM lines, and redeclarable inside stages.
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
}

impl Stages {
    pub fn split(steps: Vec<Step>) -> Result<Stages> {
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for step in steps {
            match (&step.instruction, stages.last_mut()) {
                (Instruction::From { alias, .. }, _) => {
                    if let Some(name) = alias {
                        if stages.iter().any(|s| s.name.as_deref() == Some(name)) {
                            bail!("line {}: duplicate stage name {name:?}", step.line);
                        }
                        if name.parse::<usize>().is_ok() {
                            bail!("line {}: stage name {name:?} cannot be a number", step.line);
                        }
                    }
                    let index = stages.len();
                    stages.push(Stage { index, name: alias.clone(), from: step, steps: Vec::new() });
                }
                (Instruction::Arg(args), None) => global_args.extend(args.iter().cloned()),
                (_, None) => bail!(
                    "line {}: no FROM before {}: a Dockerfile must start with FROM (ARG may precede it)",
                    step.line,
                    step.text
                ),
                (_, Some(stage)) => stage.steps.push(step),
            }
        }
        if stages.is_empty() {
            bail!("the Dockerfile has no FROM instruction");
        }
        Ok(Stages { global_args, stages })
    }

    /// A stage by `AS` name or by index.
    pub fn find(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().filter(|&i| i < self.stages.len()))
    }

    /// The stage to build: `--target`, else the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize> {
        match target {
            None => Ok(self.stages.len() - 1),
            Some(t) => self.find(t).ok_or_else(|| anyhow::anyhow!("target stage {t:?} could not be found")),
        }
    }

    /// The stages `target` needs, dependencies first. `base` resolves a stage's FROM image
    /// text (after ARG expansion) to what it names; only stage names count as dependencies.
    pub fn build_order(&self, target: usize, base: &dyn Fn(&Stage) -> Result<String>) -> Result<Vec<usize>> {
        let mut order = Vec::new();
        let mut visiting = Vec::new();
        self.visit(target, base, &mut order, &mut visiting)?;
        Ok(order)
    }

    fn visit(
        &self,
        i: usize,
        base: &dyn Fn(&Stage) -> Result<String>,
        order: &mut Vec<usize>,
        visiting: &mut Vec<usize>,
    ) -> Result<()> {
        if order.contains(&i) {
            return Ok(());
        }
        if visiting.contains(&i) {
            bail!(
                "stage {} depends on itself through {:?}",
                self.label(i),
                visiting.iter().map(|&v| self.label(v)).collect::<Vec<_>>()
            );
        }
        visiting.push(i);
        for dep in self.dependencies(i, base)? {
            self.visit(dep, base, order, visiting)?;
        }
        visiting.pop();
        order.push(i);
        Ok(())
    }

    /// Stages that stage `i` reads: its FROM, `COPY --from`, `RUN --mount=from=`.
    pub fn dependencies(&self, i: usize, base: &dyn Fn(&Stage) -> Result<String>) -> Result<Vec<usize>> {
        let stage = &self.stages[i];
        let mut deps = Vec::new();
        // FROM can only name an earlier stage; a later one is an image of that name.
        if let Some(d) = self.find_named(&base(stage)?).filter(|&d| d < i) {
            deps.push(d);
        }
        for step in &stage.steps {
            let froms: Vec<&str> = match &step.instruction {
                Instruction::Copy(c) => c.from.as_deref().into_iter().collect(),
                Instruction::Run { mounts, .. } => mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                if let Some(d) = self.find(f) {
                    if d == i {
                        bail!("line {}: stage {} cannot copy from itself", step.line, self.label(i));
                    }
                    deps.push(d);
                }
            }
        }
        Ok(deps)
    }

    /// FROM names stages by name only (a number there is an image name).
    fn find_named(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    fn label(&self, i: usize) -> String {
        self.stages[i].name.clone().unwrap_or_else(|| i.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruction::from_nodes;
    use crate::parser::parse;

    fn stages(text: &str) -> Stages {
        Stages::split(from_nodes(&parse(text).unwrap().nodes).unwrap()).unwrap()
    }

    fn image(s: &Stage) -> Result<String> {
        let Instruction::From { image, .. } = &s.from.instruction else { unreachable!() };
        Ok(image.clone())
    }

    #[test]
    fn builds_only_what_the_target_needs_in_order() {
        let s = stages(
            "ARG V=1\nFROM alpine AS base\nRUN a\nFROM base AS build\nCOPY --from=tools /t /t\n\
             FROM busybox AS tools\nFROM scratch AS unused\nFROM base\nCOPY --from=build /out /\n",
        );
        assert_eq!(s.global_args, [("V".to_string(), Some("1".to_string()))]);
        assert_eq!(s.stages.len(), 5);
        let last = s.target(None).unwrap();
        assert_eq!(s.build_order(last, &image).unwrap(), [0, 2, 1, 4]);
        assert_eq!(s.build_order(s.target(Some("tools")).unwrap(), &image).unwrap(), [2]);
        assert_eq!(s.find("1"), Some(1));
        assert!(s.target(Some("nope")).is_err());
    }

    #[test]
    fn structural_errors() {
        let split = |t: &str| Stages::split(from_nodes(&parse(t).unwrap().nodes).unwrap());
        assert!(split("RUN x\nFROM a\n").unwrap_err().to_string().contains("no FROM"));
        assert!(split("FROM a AS x\nFROM b AS X\n").unwrap_err().to_string().contains("duplicate"));
        let s = stages("FROM a AS x\nCOPY --from=y / /\nFROM b AS y\nCOPY --from=x / /\n");
        assert!(s.build_order(1, &image).unwrap_err().to_string().contains("depends on itself"));
    }
}
