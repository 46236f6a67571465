//! `status` (what is on the interface, and whether the kernel matches the
//! RIB) and `detach --force` (a way out of any state: whatever is there is
//! removed, without needing the state file or the pins to be readable).

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{query::ProgInfoIter, Xdp, XdpFlags};
use lnetd_host_encap::{AdoptOptions, Encapsulator, PinRoots, Table};

use super::Failure;

/// Our programs' names (src/bpf/encap.bpf.c, decap.bpf.c): only these are
/// ever detached by `detach --force`.
const OUR_PROGRAMS: [&str; 2] = ["xdp_encap", "tc_encap"];

/// The XDP program attached to `iface` (any mode), by id and name.
fn attached_xdp(iface: &str) -> Option<(u32, String)> {
    let ifindex = nix::net::if_::if_nametoindex(iface).ok()?;
    // bpf_xdp_query ignores the program fd libbpf-rs asks for: any fd does.
    let any_fd = std::fs::File::open("/dev/null").ok()?;
    let id = Xdp::new(any_fd.as_fd()).query_id(ifindex as i32, XdpFlags::empty()).ok().filter(|id| *id != 0)?;
    let name = ProgInfoIter::default()
        .find(|p| p.id == id)
        .map(|p| p.name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "?".to_owned());
    Some((id, name))
}

/// The directories of `iface`'s pinned dataplane, as src/dataplane/pins.rs
/// lays them out (`<root>/net<netns inode>/<iface>`), computed without
/// opening anything in them.
fn dataplane_dirs(iface: &str) -> Result<[PathBuf; 2], Failure> {
    use std::os::unix::fs::MetadataExt;
    let ns =
        std::fs::metadata("/proc/thread-self/ns/net").map_err(|e| format!("reading the network namespace: {e}"))?;
    let sub = Path::new(&format!("net{}", ns.ino())).join(iface);
    let roots = PinRoots::default();
    Ok([roots.bpffs.join(&sub), roots.state.join(sub)])
}

/// The agent's socket for `iface` (an agent needs the `agent` feature).
fn socket_path(iface: &str) -> Option<PathBuf> {
    #[cfg(feature = "agent")]
    return lnetd_host_encap::agent::socket_path(iface).ok();
    #[cfg(not(feature = "agent"))]
    {
        let _ = iface;
        None
    }
}

/// The agent's S-BFD state, as `status` prints it: one line of totals, one
/// per list out of service. Nothing when the agent runs no S-BFD (or
/// predates `GetLiveness`).
#[cfg(feature = "bgp")]
fn liveness(agent: &Path) {
    use lnetd_host_encap::agent::proto::v1 as pb;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let reply = rt.block_on(async {
        let mut client = lnetd_host_encap::agent::connect_local(agent).await.ok()?;
        client.get_liveness(pb::LivenessRequest::default()).await.ok().map(tonic::Response::into_inner)
    });
    let Some(r) = reply.filter(|r| r.enabled) else { return };
    let count = |phase: &str| r.lists.iter().filter(|l| l.phase == phase).count();
    println!(
        "  sbfd:   every {} ms x {}, hold-down {} ms: {} lists: {} up, {} starting, {} down, {} returning, {} unprobed; {} probes sent, {} answers",
        r.interval_ms,
        r.multiplier,
        r.hold_down_ms,
        r.lists.len(),
        count("up"),
        count("starting"),
        count("down"),
        count("returning"),
        count("unprobed"),
        r.probes_sent,
        r.answers
    );
    for l in r.lists.iter().filter(|l| !l.up) {
        println!(
            "          color {} endpoint {}: {}",
            l.color,
            l.endpoint,
            lnetd_host_encap::agent::liveness::list_line(l)
        );
    }
}

/// `status`.
pub fn status(iface: &str) -> Result<(), Failure> {
    let agent = socket_path(iface).filter(|p| std::os::unix::net::UnixStream::connect(p).is_ok());
    #[cfg(feature = "bgp")]
    let status_liveness = || agent.as_deref().map(liveness);
    #[cfg(not(feature = "bgp"))]
    let status_liveness = || ();
    let xdp = attached_xdp(iface);
    if !Encapsulator::is_pinned(iface)? {
        println!("{iface}: no dataplane of lnetd-host-encap is pinned");
        if let Some((id, name)) = xdp {
            let whose = if OUR_PROGRAMS.contains(&name.as_str()) { "ours, without pins" } else { "not ours" };
            println!("  xdp:    program id {id} ({name}) is attached: {whose}");
        }
        // An agent serving a dataplane it did not pin (a library user's).
        if let Some(path) = &agent {
            println!("  agent:  serving on {}", path.display());
        }
        status_liveness();
        return Ok(());
    }
    let enc = Encapsulator::open_with(iface, &AdoptOptions { read_only: true, ..AdoptOptions::default() })?;
    let mode = enc.attachment().map(|a| a.mode.to_string()).unwrap_or_else(|| "?".into());
    let program = xdp.map(|(id, name)| format!(", program id {id} ({name})")).unwrap_or_default();
    println!("{iface}: attached in {mode} mode{program}");
    println!("  pins:   {}", enc.pin_dir().map(|p| p.display().to_string()).unwrap_or_default());
    match &agent {
        Some(path) => println!("  agent:  serving on {}", path.display()),
        None => println!("  agent:  none (commands change the dataplane themselves)"),
    }
    let routes = enc.counted_routes()?;
    let origin = super::origins(iface);
    let mut tables: BTreeMap<Table, usize> = BTreeMap::new();
    let mut origins: BTreeMap<String, usize> = BTreeMap::new();
    for r in &routes {
        *tables.entry(r.table).or_default() += 1;
        *origins.entry(origin(r.table, r.route.prefix).0).or_default() += 1;
    }
    let per_table: Vec<String> = tables
        .iter()
        .map(|(t, n)| if *t == Table::Main { format!("main {n}") } else { format!("table {} {n}", t.id()) })
        .collect();
    let per_origin: Vec<String> = origins.iter().map(|(o, n)| format!("{o} {n}")).collect();
    println!(
        "  routes: {} ({}); by origin: {}; sources: {}",
        routes.len(),
        per_table.join(", "),
        if per_origin.is_empty() { "-".to_owned() } else { per_origin.join(", ") },
        enc.sources().len()
    );
    match enc.verify()?.as_slice() {
        [] => println!("  kernel: matches the RIB"),
        all @ [first, ..] => println!(
            "  kernel: {} differences from the RIB (`verify` lists them, `repair` fixes them), e.g. {first}",
            all.len()
        ),
    }
    status_liveness();
    Ok(())
}

/// `detach --force`: removes the pins (which releases the link, and with it
/// the program, once nothing else holds it), the state, the agent's records
/// and a stale socket; then our own program if it is still attached by
/// netlink. Says what it removed. Refuses while an agent runs: it holds the
/// link, and would keep forwarding with maps nobody can reach.
pub fn force_detach(iface: &str) -> Result<(), Failure> {
    let socket = socket_path(iface);
    if let Some(path) = socket.as_ref().filter(|p| std::os::unix::net::UnixStream::connect(p).is_ok()) {
        return Err(format!(
            "an agent serves {iface} on {} and holds its dataplane: stop it first (`systemctl stop \
             lnetd-host-encap-agent@{iface}`), then run `detach --force` again",
            path.display()
        )
        .into());
    }
    let mut removed = Vec::new();
    let mut remove = |path: &Path, what: &str| -> Result<(), Failure> {
        let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        match result {
            Ok(()) => {
                removed.push(format!("{what} {}", path.display()));
                // The namespace's directory goes with its last interface.
                if let Some(parent) = path.parent() {
                    let _ignored_if_not_empty = std::fs::remove_dir(parent);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {}: {e}", path.display()).into()),
        }
    };
    let [pins, state] = dataplane_dirs(iface)?;
    remove(&pins, "pins")?;
    remove(&state, "state")?;
    #[cfg(feature = "bgp")]
    if let Ok(origins) = lnetd_host_encap::bgp::origins::origins_path(iface) {
        if let Some(dir) = origins.parent() {
            remove(dir, "origins")?;
        }
    }
    if let Some(path) = &socket {
        remove(path, "stale socket")?;
    }
    if let Some((id, name)) = attached_xdp(iface) {
        if OUR_PROGRAMS.contains(&name.as_str()) {
            let ifindex = nix::net::if_::if_nametoindex(iface)? as i32;
            let any_fd = std::fs::File::open("/dev/null")?;
            Xdp::new(any_fd.as_fd())
                .detach(ifindex, XdpFlags::empty())
                .map_err(|e| format!("detaching XDP program {id} ({name}) from {iface}: {e}"))?;
            removed.push(format!("XDP program {id} ({name}) from {iface}"));
        } else {
            println!("left alone: XDP program {id} ({name}) on {iface} is not ours");
        }
    }
    if removed.is_empty() {
        println!("nothing of lnetd-host-encap on {iface}");
    } else {
        println!("removed:");
        for r in removed {
            println!("  {r}");
        }
    }
    Ok(())
}
