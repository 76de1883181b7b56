//! img-ls: list the images of an OCI image layout.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use img::layout::Layout;
use img::layout::ref_names;
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
    #[arg(long)]
    json: bool,
    /// Only images matching these references (a name without a tag matches all its tags)
    filters: Vec<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-ls");
    img_cli::run("img-ls", || {
        let args = Args::parse();
        let table = !args.json && std::io::stdout().is_terminal();
        // Records piped in (a pipe or a file, not a terminal or /dev/null): show just those
        // images, enriched; `img-pull R | img-ls`.
        if args.filters.is_empty() && stdin_is_piped() {
            return list_records(&args, table);
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
                let found = ref_names::filter(&entries, f);
                if found.is_empty()
                    && let Some(e) = ref_names::invalid_query(f)
                {
                    eprintln!("img-ls: {e:#}");
                    failed = true;
                }
                all.extend(found);
            }
            all.sort();
            all.dedup();
            all
        };
        let mut rows = Vec::new();
        failed |= !show(&layout, selected.iter().map(|&i| &entries[i]), table, &mut rows)?;
        if table {
            print_table(&rows);
        }
        Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    })
}

/// Whether stdin carries input from a pipe or a file (a terminal or /dev/null does not).
fn stdin_is_piped() -> bool {
    use std::os::unix::fs::FileTypeExt;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return false;
    }
    let Ok(fd) = stdin.as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(fd).metadata() else { return false };
    let t = meta.file_type();
    t.is_fifo() || t.is_file() || t.is_socket()
}

/// The images the records on stdin name, each in its record's layout (else `--layout`, else
/// the store's); one that is not there is an error, the others are still shown.
fn list_records(args: &Args, table: bool) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut rows = Vec::new();
    // Each layout opened and its index read once, however many records name it.
    let mut opened: HashMap<PathBuf, (Layout, Vec<img::document::Descriptor>)> = HashMap::new();
    for input in record::inputs(&[])? {
        let found = store::choose_layout(args.layout.layout.as_deref(), input.layout.as_deref())
            .and_then(|path| find_in(&mut opened, path, &input.name));
        match found {
            Ok(Some((layout, entry))) => failed |= !show(layout, std::iter::once(&entry), table, &mut rows)?,
            Ok(None) => {
                eprintln!("img-ls: {}: no such image in the layout", input.name);
                failed = true;
            }
            Err(e) => {
                eprintln!("img-ls: {}: {}", input.name, img_cli::one_line(&e));
                failed = true;
            }
        }
    }
    if table {
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
    Ok(ref_names::find(entries, name).first().map(|&i| (&*layout, entries[i].clone())))
}

/// Prints each entry's record (or keeps its row for the table); false if one failed.
fn show<'a>(
    layout: &Layout,
    entries: impl Iterator<Item = &'a img::document::Descriptor>,
    table: bool,
    rows: &mut Vec<Summary>,
) -> anyhow::Result<bool> {
    let mut ok = true;
    for entry in entries {
        match summary::summarise(layout, entry) {
            Ok(s) if table => rows.push(s),
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
