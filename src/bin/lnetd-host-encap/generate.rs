//! `completions SHELL` and `man`: shell completion scripts and the man page,
//! generated from the clap definitions so they never drift from the flags.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Failure};

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "lnetd-host-encap", &mut out);
    out.flush()?;
    Ok(())
}

/// Prints the man page (roff, section 8) on stdout: the command and, after it,
/// one section per subcommand with its flags (`man(1)` shows only one page per
/// file, so the subcommands are folded into it).
pub fn man() -> Result<(), Failure> {
    let command = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).section("8").render(&mut page)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_subcommand(&mut page, &command, sub, "")?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(tidy(&String::from_utf8(page)?).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// clap_mangen opens every rendered piece with the definition of the `Aq`
/// string; man-db and `lexgrog` expect `.TH` first, so it is moved after `.TH`
/// and kept once.
fn tidy(page: &str) -> String {
    const AQ: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let mut out = String::with_capacity(page.len());
    for line in page.lines().filter(|l| !AQ.contains(l)) {
        out.push_str(line);
        out.push('\n');
        if line.starts_with(".TH ") {
            for aq in AQ {
                out.push_str(aq);
                out.push('\n');
            }
        }
    }
    out
}

/// One subcommand (and, recursively, its own subcommands) as a `.SH` section
/// with its synopsis, description and options.
fn write_subcommand(
    out: &mut impl Write,
    root: &clap::Command,
    sub: &clap::Command,
    parent: &str,
) -> Result<(), Failure> {
    let path = format!("{parent}{} ", sub.get_name());
    let name = format!("{}{}", parent, sub.get_name());
    let sub = sub.clone().bin_name(format!("{} {name}", root.get_name()));
    let man = clap_mangen::Man::new(sub.clone());
    writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
    // Its parts as subsections of the subcommand's section.
    let mut parts = Vec::new();
    man.render_synopsis_section(&mut parts)?;
    man.render_description_section(&mut parts)?;
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut parts)?;
    }
    let parts = String::from_utf8(parts)?;
    for line in parts.lines() {
        match line.strip_prefix(".SH ") {
            Some(title) => writeln!(out, ".SS {title}")?,
            None => writeln!(out, "{line}")?,
        }
    }
    for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_subcommand(out, root, nested, &path)?;
    }
    Ok(())
}
