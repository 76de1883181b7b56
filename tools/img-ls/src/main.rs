//! img-ls: list the images of an OCI image layout.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use img::layout::Layout;
use img::layout::resolve;
use img::summary::{self, Summary};
use img::{record, store};
use img_cli::LayoutArg;

/// List the images in an OCI image layout: a table on a terminal, JSON Lines otherwise.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    /// Print JSON Lines even on a terminal
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only each image's digest (`sha256:…`), one per line, as `docker images -q`
    #[arg(short, long)]
    quiet: bool,
    /// Only images matching these references (a name without a tag matches all its tags), or
    /// digests or unique digest prefixes
    filters: Vec<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-ls");
    img_cli::run("img-ls", || {
        let args = Args::parse();
        let output = if args.quiet {
            Output::Digests
        } else if !args.json && std::io::stdout().is_terminal() {
            Output::Table
        } else {
            Output::Records
        };
        if args.filters.iter().any(|f| f.trim().is_empty()) {
            img_cli::usage_error::<Args>(&record::Usage::EmptyArgument.to_string());
        }
        // Records piped in (a pipe or a file, not a terminal or /dev/null): show just those
        // images, enriched; `img-pull R | img-ls`. Otherwise the whole layout.
        if args.filters.is_empty() && record::stdin() == record::Stdin::Upstream {
            return list_records(&args, output);
        }
        // Filters are checked before anything is read, as every tool checks a name.
        for f in &args.filters {
            resolve::Name::parse(f)?;
        }
        let path = store::choose_layout(args.layout.layout.as_deref(), None)?;
        if args.layout.layout.is_some() && !path.exists() {
            anyhow::bail!("{}: no such layout", path.display());
        }
        // The store with nothing stored yet (no directory, or an empty one) is an empty list; a
        // directory holding something else is not a layout, and Layout::open says so.
        let empty = std::fs::read_dir(&path).map_or(true, |mut d| d.next().is_none());
        if empty && !path.join("oci-layout").exists() {
            return Ok(ExitCode::SUCCESS);
        }
        let layout = Layout::open(&path)?;
        let entries = layout.read_index()?.entries().to_vec();
        let mut failed = false;
        let selected: Vec<usize> = if args.filters.is_empty() {
            // Signatures and other referrers kept beside their images are not images.
            (0..entries.len())
                .filter(|&i| !img::registry::referrers::is_referrer_entry(&layout, &entries[i]))
                .collect()
        } else {
            let mut all = Vec::new();
            for f in &args.filters {
                match resolve::filter(&entries, f) {
                    Ok(found) => all.extend(found),
                    Err(e) => {
                        eprintln!("img-ls: {}", img_cli::one_line(&e));
                        failed = true;
                    }
                }
            }
            all.sort();
            all.dedup();
            all
        };
        let mut rows = Vec::new();
        failed |= !show(&layout, selected.iter().map(|&i| &entries[i]), output, &mut rows)?;
        if output == Output::Table {
            print_table(&rows);
        }
        Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    })
}

/// What img-ls prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// A table for people (stdout a terminal).
    Table,
    /// A JSON record per image.
    Records,
    /// `-q`: just each image's digest, which every other tool takes as a name on stdin.
    Digests,
}

/// The images the records on stdin name, each in its record's layout (else `--layout`, else
/// the store's); one that is not there is an error, the others are still shown.
fn list_records(args: &Args, output: Output) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut rows = Vec::new();
    // Each layout opened and its index read once, however many records name it.
    let mut opened: HashMap<PathBuf, (Layout, Vec<img::document::Descriptor>)> = HashMap::new();
    let inputs = record::read_stdin()?;
    img_cli::inputs::check_names(&inputs)?;
    for input in inputs {
        let found = store::choose_layout(args.layout.layout.as_deref(), input.layout.as_deref())
            .and_then(|path| find_in(&mut opened, path, &input.name));
        match found {
            Ok(Some((layout, entry))) => failed |= !show(layout, std::iter::once(&entry), output, &mut rows)?,
            Ok(None) => {
                eprintln!("img-ls: {}: no such image in the layout", input.name);
                failed = true;
            }
            Err(e) => {
                // An error that quotes the name (an ambiguous prefix) says it as every tool does.
                let message = img_cli::one_line(&e);
                if message.contains(&format!("{:?}", input.name)) {
                    eprintln!("img-ls: {message}");
                } else {
                    eprintln!("img-ls: {}: {message}", input.name);
                }
                failed = true;
            }
        }
    }
    if output == Output::Table {
        print_table(&rows);
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The entry `name` finds in the layout at `path`, opening it (and reading its index) only the
/// first time.
fn find_in<'m>(
    opened: &'m mut HashMap<PathBuf, (Layout, Vec<img::document::Descriptor>)>,
    path: PathBuf,
    name: &str,
) -> anyhow::Result<Option<(&'m Layout, img::document::Descriptor)>> {
    let (layout, entries) = match opened.entry(path) {
        Entry::Occupied(o) => o.into_mut(),
        Entry::Vacant(v) => {
            let layout = Layout::open(v.key())?;
            let entries = layout.read_index()?.entries().to_vec();
            v.insert((layout, entries))
        }
    };
    Ok(resolve::find(entries, name)?.first().map(|&i| (&*layout, entries[i].clone())))
}

/// Prints each entry's record (or keeps its row for the table); false if one failed.
fn show<'a>(
    layout: &Layout,
    entries: impl Iterator<Item = &'a img::document::Descriptor>,
    output: Output,
    rows: &mut Vec<Summary>,
) -> anyhow::Result<bool> {
    let mut ok = true;
    for entry in entries {
        if output == Output::Digests {
            // What index.json names, nothing read beyond it: a quick list for another tool.
            print_line(&entry.digest.to_string())?;
            continue;
        }
        match summary::summarise(layout, entry) {
            Ok(s) if output == Output::Table => rows.push(s),
            Ok(s) => record::print(&s.record(layout.root()))?,
            Err(e) => {
                let name = entry.ref_name().map_or_else(|| entry.digest.to_string(), str::to_string);
                eprintln!("img-ls: {name}: {}", img_cli::one_line(&e));
                ok = false;
            }
        }
    }
    Ok(ok)
}

fn print_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush())?;
    Ok(())
}

fn print_table(rows: &[Summary]) {
    let mut lines = vec![["REFERENCE", "DIGEST", "PLATFORM", "SIZE", "CREATED"].map(String::from)];
    for s in rows {
        lines.push([
            s.descriptor.ref_name().unwrap_or("<none>").to_string(),
            s.descriptor.digest.short().to_string(),
            if s.platforms.is_empty() { "-".into() } else { s.platforms.join(",") },
            human_size(s.size),
            s.created.as_deref().map_or("-".into(), short_time),
        ]);
    }
    let widths: Vec<usize> =
        (0..5).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    for line in &lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `2024-05-01T12:34:56.789Z` → `2024-05-01 12:34`.
fn short_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => rfc3339.to_string(),
    }
}
