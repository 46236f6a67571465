//! `verify` (the differences between the kernel's maps and the RIB, exit
//! code 1 when there are any) and `repair` (makes the kernel agree with the
//! RIB again and says what it fixed), on the dataplane adopted by the command
//! itself; through an agent, remote.rs sends the same over the local socket.

use lnetd_host_encap::diagnostics::Difference;

use super::{adopt, Failure};

/// How `verify` and `repair` print.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// One difference a line.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// A difference as the command prints and the agent sends it.
pub struct Line {
    pub map: String,
    pub entry: String,
    pub kind: String,
    pub text: String,
}

impl From<&Difference> for Line {
    fn from(d: &Difference) -> Line {
        Line { map: d.map.to_owned(), entry: d.entry.clone(), kind: d.kind.name().to_owned(), text: d.to_string() }
    }
}

fn json(iface: &str, key: &str, lines: &[Line]) -> String {
    let items: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::json!({ "map": l.map, "entry": l.entry, "kind": l.kind, "text": l.text }))
        .collect();
    let command = if key == "repaired" { "repair" } else { "verify" };
    // Indented, as every document but watch's lines (docs/operations-json.md).
    let doc = super::output::document(command, iface, serde_json::json!({ key: items }));
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Prints what `verify` found; a failure (exit code 1) when anything differs.
pub fn print_verify(iface: &str, found: &[Line], output: Output) -> Result<(), Failure> {
    match output {
        Output::Json => println!("{}", json(iface, "differences", found)),
        Output::Text if found.is_empty() => println!("{iface}: the kernel matches the RIB"),
        Output::Text => found.iter().for_each(|l| println!("{}", l.text)),
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} differences between the kernel and the RIB on {iface}: `lnetd-host-encap -i {iface} repair` makes the \
         kernel agree with the RIB (what `routes` shows)",
        found.len()
    )
    .into())
}

/// Prints what `repair` fixed.
pub fn print_repair(iface: &str, fixed: &[Line], output: Output) {
    match output {
        Output::Json => println!("{}", json(iface, "repaired", fixed)),
        Output::Text if fixed.is_empty() => println!("{iface}: nothing to repair, the kernel matches the RIB"),
        Output::Text => {
            fixed.iter().for_each(|l| println!("repaired: {}", l.text));
            println!("{iface}: {} differences repaired; the kernel matches the RIB", fixed.len());
        }
    }
}

/// `verify` without an agent: a reader's adoption, beside any other reader.
pub fn verify(iface: &str, output: Output) -> Result<(), Failure> {
    let found: Vec<Line> = adopt(iface, false)?.diagnostics().verify()?.iter().map(Line::from).collect();
    print_verify(iface, &found, output)
}

/// `repair` without an agent. A writer's adoption already repairs a change
/// that a killed process left unfinished, so what differs is read first, as
/// a reader, to say what was fixed.
pub fn repair(iface: &str, output: Output) -> Result<(), Failure> {
    let mut fixed: Vec<Line> = adopt(iface, false)?.diagnostics().verify()?.iter().map(Line::from).collect();
    let enc = adopt(iface, true)?;
    for d in enc.diagnostics().repair()? {
        let line = Line::from(&d);
        if !fixed.iter().any(|l| l.text == line.text) {
            fixed.push(line);
        }
    }
    let left = enc.diagnostics().verify()?;
    if let Some(first) = left.first() {
        return Err(format!("{} differences remain after the repair, e.g. {first}", left.len()).into());
    }
    print_repair(iface, &fixed, output);
    Ok(())
}
