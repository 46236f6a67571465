//! `apply`: the file read with its guards (an empty or route-less file is
//! refused unless `--allow-empty`), a plan (a dry run, shown by `--dry-run`
//! as counts and a sample), and a plan that removes more than
//! `--max-remove-share` of the routes confirmed on a terminal or by
//! `--force`, like `terraform apply`.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read, Write};

use lnetd_host_encap::{desired::ApplyReport, desired::DesiredFormat, DesiredState, Encapsulator, IpNetwork, Table};

use super::{output, Failure};

/// Kept routes listed by `--dry-run`.
const KEPT_SAMPLE: usize = 5;

/// `apply`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The desired state: routes, sources, dscp_map (see the README); TOML or
    /// JSON by extension, - for JSON on stdin.
    pub file: String,
    /// Print what would change (counts and a sample of each kind), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Accept a file that says nothing (0 bytes, `{}`, `[]`, no `routes` key)
    /// as "no routes": every route is removed. Without it, write `routes = []`.
    #[arg(long)]
    allow_empty: bool,
    /// The largest share of the current routes an apply removes without
    /// --force (or a "yes" on a terminal): 0..=1 or a percentage.
    #[arg(long, value_name = "SHARE", default_value = "50%", value_parser = parse_share)]
    max_remove_share: f64,
    /// Apply even if it removes more than --max-remove-share, without asking
    /// (and without the comparison that guard needs: a large apply's fast way).
    #[arg(long)]
    force: bool,
}

/// `50%` or `0.5`.
fn parse_share(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let share = number.trim().parse::<f64>().map_err(|e| format!("{text:?}: {e}"))? / scale;
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("{text:?}: a share is 0..=1 or 0%..=100%"));
    }
    Ok(share)
}

/// Where the change goes: the dataplane itself or the agent that owns it.
pub trait Target {
    /// What applying `desired` would do (nothing changed).
    fn plan(&mut self, desired: &DesiredState) -> Result<ApplyReport, Failure>;
    /// Applies `desired`.
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, Failure>;
}

/// The dataplane itself: adopted once, so nothing changes between the plan
/// and the apply.
pub struct Direct<'a> {
    iface: &'a str,
    change: bool,
    enc: Option<&'static Encapsulator>,
}

impl Direct<'_> {
    /// The dataplane of `iface`, adopted to change it unless `args` is a dry run.
    pub fn new<'a>(iface: &'a str, args: &ApplyArgs) -> Direct<'a> {
        Direct { iface, change: !args.dry_run, enc: None }
    }

    fn enc(&mut self) -> Result<&Encapsulator, Failure> {
        if self.enc.is_none() {
            self.enc = Some(super::adopt(self.iface, self.change)?);
        }
        self.enc.ok_or_else(|| "no dataplane".into())
    }
}

impl Target for Direct<'_> {
    fn plan(&mut self, desired: &DesiredState) -> Result<ApplyReport, Failure> {
        Ok(self.enc()?.apply(desired, lnetd_host_encap::ApplyOptions::default().dry_run(true))?)
    }

    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, Failure> {
        Ok(self.enc()?.apply(desired, lnetd_host_encap::ApplyOptions::default())?)
    }
}

/// Runs `apply` against `target`.
pub fn run(args: ApplyArgs, target: &mut dyn Target) -> Result<(), Failure> {
    let mut progress = output::Progress::default();
    let bytes = (args.file != "-").then(|| std::fs::metadata(&args.file).map(|m| m.len()).ok()).flatten();
    progress.phase(format!("parsing {}", args.file), output::large_apply(0, bytes));
    let desired = read_desired(&args.file, args.allow_empty)?;
    let large = output::large_apply(desired.routes.len(), bytes);
    // The plan is a whole dry run (through the agent: the table sent and
    // compared once more), wanted only for --dry-run and the removal guard,
    // which --force waives.
    let plan = if args.force && !args.dry_run {
        None
    } else {
        progress.phase(format!("comparing {} routes with the tables", desired.routes.len()), large);
        Some(target.plan(&desired)?)
    };
    drop(progress);
    if let Some(plan) = &plan {
        // Routes now = removed + (desired - added): every desired route is
        // added, replaced or kept, and every current one kept, replaced or removed.
        let current = (plan.removed.len() + desired.routes.len()).saturating_sub(plan.added.len());
        let share = if current == 0 { 0.0 } else { plan.removed.len() as f64 / current as f64 };
        if args.dry_run {
            output::report(plan);
            print_plan(plan, &desired, current, share, args.max_remove_share);
            return Ok(());
        }
        if share > args.max_remove_share {
            confirm(plan.removed.len(), current, share, args.max_remove_share)?;
        }
    }
    let mut progress = output::Progress::default();
    let phase = match &plan {
        Some(plan) => format!("writing {} changes", plan.added.len() + plan.replaced.len() + plan.removed.len()),
        None => format!("applying {} routes", desired.routes.len()),
    };
    progress.phase(phase, large);
    let report = target.apply(&desired);
    drop(progress);
    let report = report?;
    output::report(&report);
    Ok(())
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// The plan's counts and the routes kept (the report lists the others).
fn print_plan(plan: &ApplyReport, desired: &DesiredState, current: usize, share: f64, max: f64) {
    let kept = desired.routes.len().saturating_sub(plan.added.len() + plan.replaced.len());
    println!(
        "plan: {} added, {} changed, {} removed, {} kept, of {current} routes now; removes {} (--max-remove-share {}{})",
        plan.added.len(),
        plan.replaced.len(),
        plan.removed.len(),
        kept,
        percent(share),
        percent(max),
        if share > max { ": the apply will need --force" } else { "" },
    );
    let changed: BTreeSet<(Table, IpNetwork)> = plan.added.iter().chain(&plan.replaced).copied().collect();
    let valid = desired.validate().map(|v| v.routes().keys().copied().collect::<Vec<_>>()).unwrap_or_default();
    let kept_keys: Vec<&(Table, IpNetwork)> = valid.iter().filter(|k| !changed.contains(k)).collect();
    for (table, prefix) in kept_keys.iter().take(KEPT_SAMPLE) {
        println!("  kept {prefix}{}", output::table_suffix(*table));
    }
    if kept_keys.len() > KEPT_SAMPLE {
        println!("  ... and {} more kept", kept_keys.len() - KEPT_SAMPLE);
    }
}

/// Asks on a terminal; refuses without one.
fn confirm(removed: usize, current: usize, share: f64, max: f64) -> Result<(), Failure> {
    let what = format!(
        "this apply removes {removed} of {current} routes ({}), more than --max-remove-share {}",
        percent(share),
        percent(max)
    );
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(format!("{what}: check it with --dry-run, then pass --force").into());
    }
    eprint!("{what}. Apply it? Only 'yes' is accepted: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        return Err("not applied".into());
    }
    Ok(())
}

/// The desired state in FILE: TOML or JSON by extension, `-` for JSON on stdin.
fn read_desired(file: &str, allow_empty: bool) -> Result<DesiredState, Failure> {
    let (text, format) = if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        (text, DesiredFormat::Json)
    } else {
        let format = match std::path::Path::new(file).extension().and_then(|e| e.to_str()) {
            Some("toml") => DesiredFormat::Toml,
            Some("json") => DesiredFormat::Json,
            _ => return Err(format!("{file}: name it .toml or .json (or use - for JSON on stdin)").into()),
        };
        (std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?, format)
    };
    DesiredState::from_file_text(&text, format, allow_empty).map_err(|e| format!("{file}: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_fractions_or_percentages() {
        assert_eq!(parse_share("50%"), Ok(0.5));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert_eq!(parse_share("100%"), Ok(1.0));
        assert!(parse_share("150%").is_err());
        assert!(parse_share("-0.1").is_err());
        assert!(parse_share("half").is_err());
    }
}
