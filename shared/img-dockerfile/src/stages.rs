//! Multi-stage structure: global ARGs before the first FROM, stages split at each FROM, and
//! which stages a target needs, in the order they must be built. Stages are found by name in
//! a map and the dependency graph is walked with a stack of its own, so ten thousand stages
//! cost ten thousand steps and no deeper recursion than one.

use std::collections::HashMap;

use crate::error::ParseError;
use crate::instruction::{Instruction, Step};

type Result<T> = std::result::Result<T, ParseError>;

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
    /// The line each of `global_args` is on.
    pub global_arg_lines: Vec<usize>,
    pub stages: Vec<Stage>,
    /// Stages by `AS` name.
    names: HashMap<String, usize>,
}

impl Stages {
    pub fn split(steps: Vec<Step>) -> Result<Stages> {
        let mut global_args = Vec::new();
        let mut global_arg_lines = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut names = HashMap::new();
        for step in steps {
            match (&step.instruction, stages.last_mut()) {
                (Instruction::From { alias, .. }, _) => {
                    let index = stages.len();
                    if let Some(name) = alias {
                        if name.parse::<usize>().is_ok() {
                            return Err(ParseError::at(
                                step.line,
                                format!("stage name {name:?} cannot be a number"),
                            ));
                        }
                        if names.insert(name.clone(), index).is_some() {
                            return Err(ParseError::at(step.line, format!("duplicate stage name {name:?}")));
                        }
                    }
                    stages.push(Stage { index, name: alias.clone(), from: step, steps: Vec::new() });
                }
                (Instruction::Arg(args), None) => {
                    global_args.extend(args.iter().cloned());
                    global_arg_lines.extend(args.iter().map(|_| step.line));
                }
                (_, None) => {
                    return Err(ParseError::at(
                        step.line,
                        format!(
                            "no FROM before {}: a Dockerfile must start with FROM (ARG may precede it)",
                            step.text
                        ),
                    ));
                }
                (_, Some(stage)) => stage.steps.push(step),
            }
        }
        if stages.is_empty() {
            return Err(ParseError::whole("the Dockerfile has no FROM instruction"));
        }
        Ok(Stages { global_args, global_arg_lines, stages, names })
    }

    /// A stage by `AS` name or by index.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.find_named(name).or_else(|| name.parse::<usize>().ok().filter(|&i| i < self.stages.len()))
    }

    /// The stage to build: `--target`, else the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize> {
        match target {
            None => Ok(self.stages.len() - 1),
            Some(t) => self
                .find(t)
                .ok_or_else(|| ParseError::whole(format!("target stage {t:?} could not be found"))),
        }
    }

    /// The stages `target` needs, dependencies first. `base` resolves a stage's FROM image
    /// text (after ARG expansion) to what it names; only stage names count as dependencies.
    pub fn build_order(&self, target: usize, base: &dyn Fn(&Stage) -> Result<String>) -> Result<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Visiting,
            Done,
        }
        let mut marks = vec![Mark::New; self.stages.len()];
        let mut order = Vec::new();
        // Depth first, the path from the target held here: each stage on it with the
        // dependencies it has still to visit.
        let mut path = vec![(target, self.dependencies(target, base)?.into_iter())];
        marks[target] = Mark::Visiting;
        while let Some((i, deps)) = path.last_mut() {
            let i = *i;
            let Some(dep) = deps.next() else {
                marks[i] = Mark::Done;
                order.push(i);
                path.pop();
                continue;
            };
            match marks[dep] {
                Mark::Done => {}
                Mark::Visiting => {
                    let through: Vec<String> = path.iter().map(|&(v, _)| self.label(v)).collect();
                    let shown = match through.len() {
                        n if n > 10 => format!("{:?} and {} more", &through[..10], n - 10),
                        _ => format!("{through:?}"),
                    };
                    let message = format!("stage {} depends on itself through {shown}", self.label(dep));
                    return Err(ParseError::whole(message));
                }
                Mark::New => {
                    marks[dep] = Mark::Visiting;
                    path.push((dep, self.dependencies(dep, base)?.into_iter()));
                }
            }
        }
        Ok(order)
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
                Instruction::Run(run) => run.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                if let Some(d) = self.find(f) {
                    if d == i {
                        return Err(ParseError::at(
                            step.line,
                            format!("stage {} cannot copy from itself", self.label(i)),
                        ));
                    }
                    deps.push(d);
                }
            }
        }
        Ok(deps)
    }

    /// A stage by `AS` name only, as FROM names stages (a number there is an image name).
    pub fn find_named(&self, name: &str) -> Option<usize> {
        self.names.get(&name.to_lowercase()).copied()
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
        let err = split("ARG A\nFROM a AS x\nRUN x\nFROM b AS x\n").unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        let s = stages("ARG A\nARG B=1 C\nFROM a\n");
        assert_eq!(s.global_arg_lines, [1, 2, 2]);
    }

    #[test]
    fn thirty_thousand_stages_in_a_chain() {
        // Each stage builds on the one before: recursing stage by stage overflows the stack,
        // and looking names up in a list takes quadratic time.
        let n = 30_000;
        let text: String = std::iter::once("FROM scratch AS s0\n".to_string())
            .chain((1..n).map(|i| format!("FROM s{} AS s{i}\n", i - 1)))
            .collect();
        let s = stages(&text);
        let order = s.build_order(n - 1, &image).unwrap();
        assert_eq!(order, (0..n).collect::<Vec<_>>());
        assert_eq!(s.find("S29999"), Some(n - 1));

        // A cycle through every one of them is told in one short line.
        let text: String =
            (0..n).map(|i| format!("FROM scratch AS s{i}\nCOPY --from=s{} / /\n", (i + 1) % n)).collect();
        let err = stages(&text).build_order(0, &image).unwrap_err().to_string();
        assert!(err.starts_with("stage s0 depends on itself through [\"s0\", \"s1\""), "{err}");
        assert!(err.ends_with("and 29990 more"), "{err}");
    }
}
