//! `detach --force` (a way out of any state: whatever is there is
//! removed, without needing the state file or the pins to be readable).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{query::ProgInfoIter, Xdp, XdpFlags};
use lnetd_host_encap::pins::PinRoots;

use super::Failure;

/// Our programs' names (src/bpf/encap.bpf.c, decap.bpf.c): only these are
/// ever detached by `detach --force`.
pub(super) const OUR_PROGRAMS: [&str; 2] = ["xdp_encap", "tc_encap"];

/// The decapsulator's programs (src/bpf/decap.bpf.c): ours too, but never
/// detached by the encapsulator's `detach --force` (`pop detach` does).
pub(super) const DECAP_PROGRAMS: [&str; 2] = ["xdp_decap", "tc_decap"];

/// The XDP program attached to `iface` (any mode), by id and name.
pub(super) fn attached_xdp(iface: &str) -> Option<(u32, String)> {
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
    // From another mount namespace the pins removed would be that
    // namespace's, and the link pinned on the host's bpffs would keep the
    // program attached: it said "removed" and exited 0 with both in place.
    PinRoots::default().check_hosts_bpffs()?;
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
