//! `apply`: the file read with its guards (an empty or route-less file is
//! refused unless `--allow-empty`), a plan shown by `--dry-run` as counts and
//! a sample, and an apply that would remove more than `--max-remove-share`
//! of the routes refused (with the counts and a sample) unless confirmed on
//! a terminal or `--force`d, like `terraform apply`. The guard is checked
//! with the change, so an apply is one pass (one round trip to an agent).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read, Write};

use lnetd_host_encap::errors::RouteError;
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

/// The removal guard's refusal: nothing changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Routes the apply would remove.
    pub removed: usize,
    /// Routes in force.
    pub current: usize,
    /// The first of those it would remove.
    pub sample: Vec<(Table, IpNetwork)>,
}

/// Why an apply did not happen.
pub enum NotApplied {
    /// The removal guard refused it (nothing changed).
    Guard(Refused),
    /// Anything else.
    Failed(Failure),
}

impl<E: Into<Failure>> From<E> for NotApplied {
    fn from(e: E) -> NotApplied {
        NotApplied::Failed(e.into())
    }
}

/// Where the change goes: the dataplane itself or the agent that owns it.
pub trait Target {
    /// What applying `desired` would do (nothing changed).
    fn plan(&mut self, desired: &DesiredState) -> Result<ApplyReport, Failure>;
    /// Applies `desired`, unless it removes more than `max_remove_share` of
    /// the routes in force (None: whatever it removes). The guard is checked
    /// with the change, against the same table: one pass, no plan first.
    fn apply(&mut self, desired: &DesiredState, max_remove_share: Option<f64>) -> Result<ApplyReport, NotApplied>;
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

/// Routes of a refusal's sample.
#[cfg(feature = "agent")]
const REFUSED_SAMPLE: usize = 10;

impl Target for Direct<'_> {
    fn plan(&mut self, desired: &DesiredState) -> Result<ApplyReport, Failure> {
        Ok(self.enc()?.apply(desired, lnetd_host_encap::ApplyOptions::default().dry_run(true))?)
    }

    fn apply(&mut self, desired: &DesiredState, max_remove_share: Option<f64>) -> Result<ApplyReport, NotApplied> {
        // The guard is the apply's own: checked on the plan it writes.
        let mut options = lnetd_host_encap::ApplyOptions::default();
        if let Some(max) = max_remove_share {
            options = options.max_remove_share(max);
        }
        match self.enc()?.apply(desired, options) {
            Ok(report) => Ok(report),
            Err(RouteError::RemovalRefused { removed, current, sample, .. }) => {
                Err(NotApplied::Guard(Refused { removed, current, sample }))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs `apply` against `target`.
pub fn run(args: ApplyArgs, target: &mut dyn Target) -> Result<(), Failure> {
    let mut progress = output::Progress::default();
    let bytes = (args.file != "-").then(|| std::fs::metadata(&args.file).map(|m| m.len()).ok()).flatten();
    progress.phase(format!("parsing {}", args.file), output::large_apply(0, bytes));
    let desired = read_desired(&args.file, args.allow_empty)?;
    let large = output::large_apply(desired.routes.len(), bytes);
    if args.dry_run {
        progress.phase(format!("comparing {} routes with the tables", desired.routes.len()), large);
        let plan = target.plan(&desired)?;
        drop(progress);
        let current = routes_now(&plan, &desired);
        let share = if current == 0 { 0.0 } else { plan.removed.len() as f64 / current as f64 };
        output::report(&plan);
        print_plan(&plan, &desired, current, share, args.max_remove_share);
        return Ok(());
    }
    progress.phase(format!("applying {} routes", desired.routes.len()), large);
    // One pass: the guard is checked with the change (by the agent, or by
    // this process holding the dataplane), not by a plan first.
    let guard = (!args.force).then_some(args.max_remove_share);
    let report = target.apply(&desired, guard);
    drop(progress);
    let report = match report {
        Ok(report) => report,
        Err(NotApplied::Failed(e)) => return Err(e),
        Err(NotApplied::Guard(refused)) => {
            confirm(&refused, args.max_remove_share)?;
            let mut progress = output::Progress::default();
            progress.phase(format!("applying {} routes", desired.routes.len()), large);
            match target.apply(&desired, None) {
                Ok(report) => report,
                Err(NotApplied::Failed(e)) => return Err(e),
                Err(NotApplied::Guard(_)) => return Err("the apply was refused by its removal guard".into()),
            }
        }
    };
    output::report(&report);
    // The process ends next: freeing a million routes one string at a time
    // would only delay its exit (about a tenth of a second).
    std::mem::forget(desired);
    Ok(())
}

/// The removal guard checked from a dry run's `plan`: refused when it
/// removes more than `max` of the routes in force. For an agent too old to
/// guard an apply itself; the library's own guard
/// ([`lnetd_host_encap::ApplyOptions::max_remove_share`]) does it in one pass.
///
/// # Errors
/// [`NotApplied::Guard`] with the counts and a sample.
#[cfg(feature = "agent")]
pub fn guard(plan: &ApplyReport, desired: &DesiredState, max: f64) -> Result<(), NotApplied> {
    let current = routes_now(plan, desired);
    if current > 0 && plan.removed.len() as f64 > max * current as f64 {
        let sample = plan.removed.iter().take(REFUSED_SAMPLE).copied().collect();
        return Err(NotApplied::Guard(Refused { removed: plan.removed.len(), current, sample }));
    }
    Ok(())
}

/// Routes in force before `plan`: every desired route is added, replaced
/// or kept, and every current one kept, replaced or removed (the report's
/// `unchanged` counts sources too).
fn routes_now(plan: &ApplyReport, desired: &DesiredState) -> usize {
    (plan.removed.len() + desired.routes.len()).saturating_sub(plan.added.len())
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

/// Asks on a terminal; refuses without one (with the counts and a sample).
fn confirm(refused: &Refused, max: f64) -> Result<(), Failure> {
    let Refused { removed, current, sample } = refused;
    let share = *removed as f64 / (*current).max(1) as f64;
    let example: Vec<String> =
        sample.iter().take(KEPT_SAMPLE).map(|(t, p)| format!("{p}{}", output::table_suffix(*t))).collect();
    let what = format!(
        "this apply removes {removed} of {current} routes ({}), more than --max-remove-share {} (e.g. {}{})",
        percent(share),
        percent(max),
        example.join(", "),
        if *removed > example.len() { ", ..." } else { "" }
    );
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(format!("{what}: nothing changed; check it with --dry-run, then pass --force").into());
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
